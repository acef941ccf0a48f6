// Preloaded (`--import`) by scripts/run-tests.mjs into every test file's process: passwords hashed in it cost
// N = 2^10 instead of 2^15 (src/vault/password.ts, passwordCostForTests). Hundreds of hashes at ~0.1 s of CPU
// each were several percent of the suite's CPU. The module is the compiled one the test files import, so the
// setting reaches them; the `juniper` processes they start, and src/vault/password.test.ts, hash at the real cost.
import { isMainThread } from 'node:worker_threads';

if (isMainThread) {
  const { passwordCostForTests } = await import(new URL('../dist-test/src/vault/password.js', import.meta.url).href);
  passwordCostForTests(true);
}
