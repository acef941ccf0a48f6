// The second step of `npm run build`: bundles what tsc emitted into dist/src/ into dist/app/, which the CLI
// (bin/juniper.js) and the threads it starts run from. Why: node resolves, reads and links every ES module one
// by one, and an app command loaded about 500 of them (kysely, zod, commander, Juniper's own); that was most of
// the ~0.9 s of CPU every `juniper` command cost before doing anything (docs/benchmarks.md, "CLI start").
// Bundled, the same command costs about half.
//
// Split at the dynamic imports (the CLI imports each command's modules when that command runs, and the mail
// libraries with their first use), so a command still loads only what it runs. The threads' entries
// (parse-worker.js, workers-thread.js) sit beside the chunks: the code that starts them finds them next to
// itself, as it does in dist/src/. Left out, and loaded from node_modules as before: better-sqlite3 (a native
// addon), pg (loaded by name, with createRequire, only for PostgreSQL) and pino (its transports run files of
// their own in worker threads). meta.json says which package went into which chunk
// (test/helpers/loaded-packages.mjs reads it).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outdir = path.join(root, 'dist/app');

const entries = ['main.js', 'mailbox/parse-worker.js', 'worker/workers-thread.js'].map((file) => path.join(root, 'dist/src', file));
const missing = entries.filter((file) => !fs.existsSync(file));
if (missing.length > 0) {
  console.error(`bundle: ${missing.map((file) => path.relative(root, file)).join(', ')} missing: tsc has not emitted dist/src/ (run \`npm run build\`).`);
  process.exit(1);
}

fs.rmSync(outdir, { recursive: true, force: true });
const result = await build({
  entryPoints: entries,
  outdir,
  entryNames: '[name]',
  chunkNames: 'chunk-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['better-sqlite3', 'pg', 'pino'],
  // The CommonJS packages inside call require() for node's own modules; an ES module has no require of its own.
  banner: { js: "import { createRequire as __juniperRequire } from 'node:module'; const require = __juniperRequire(import.meta.url);" },
  // Chained to tsc's maps: with `node --enable-source-maps` a stack trace names the TypeScript line.
  sourcemap: 'linked',
  metafile: true,
  absWorkingDir: root,
  logLevel: 'warning',
});
fs.writeFileSync(path.join(outdir, 'meta.json'), JSON.stringify(result.metafile));
