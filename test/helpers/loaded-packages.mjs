// Preloaded (`node --import`) into a child process by worker-footprint.test.ts: on exit, writes the npm
// packages the process has loaded as CommonJS (imapflow, libmime, iconv-lite and pg are; mailparser's and
// nodemailer's own files are ESM, their CommonJS dependencies show they were loaded) as one line on stderr.
import { createRequire } from 'node:module';

const cache = createRequire(import.meta.url).cache;
process.on('exit', () => {
  const names = new Set(Object.keys(cache).flatMap((file) => /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(file)?.[1] ?? []));
  process.stderr.write(`loaded-packages: ${[...names].sort().join(' ')}\n`);
});
