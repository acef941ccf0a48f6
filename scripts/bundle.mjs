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
// addon) and pg (loaded by name, with createRequire, only for PostgreSQL). pino is bundled: loaded from
// node_modules as CommonJS, file by file, it cost every command about 40 ms of its ~390 ms start. What could not be
// bundled is its transports (files it starts in worker threads), and Juniper uses none: it logs to a file
// descriptor (lib/logger.ts). meta.json says which package went into which chunk
// (test/helpers/loaded-packages.mjs reads it). The externals resolve from dist/app/, so they are the top-level
// copies in node_modules.
//
// Nothing is done when the bundle is newer than what it is made of (tsc's output, this script, the installed
// packages). A new bundle replaces the old one file by file, never as an empty directory, and the previous
// bundle's chunks are kept (their names are hashes of their content): a `juniper serve` still running from it
// after `git pull && npm ci` can go on loading the chunks it has not loaded yet until it is restarted.
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

const metaFile = path.join(outdir, 'meta.json');
const newest = (dir) =>
  fs.readdirSync(dir, { withFileTypes: true }).reduce((m, e) => Math.max(m, e.isDirectory() ? newest(path.join(dir, e.name)) : fs.statSync(path.join(dir, e.name)).mtimeMs), 0);
const mtime = (file) => (fs.existsSync(file) ? fs.statSync(file).mtimeMs : Infinity);
const inputs = Math.max(newest(path.join(root, 'dist/src')), mtime(fileURLToPath(import.meta.url)), mtime(path.join(root, 'node_modules/.package-lock.json')));
if (fs.existsSync(metaFile) && fs.statSync(metaFile).mtimeMs > inputs) process.exit(0);

const next = `${outdir}.next`;
fs.rmSync(next, { recursive: true, force: true });
const result = await build({
  entryPoints: entries,
  outdir: next,
  entryNames: '[name]',
  chunkNames: 'chunk-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['better-sqlite3', 'pg'],
  // The CommonJS packages inside call require() for node's own modules; an ES module has no require of its own.
  banner: { js: "import { createRequire as __juniperRequire } from 'node:module'; const require = __juniperRequire(import.meta.url);" },
  // Chained to tsc's maps: with `node --enable-source-maps` a stack trace names the TypeScript line.
  sourcemap: 'linked',
  metafile: true,
  absWorkingDir: root,
  logLevel: 'warning',
});

// Chunks first, the entries after them, meta.json last: an interrupted swap leaves meta.json older than its
// inputs, so the next build does it again.
const outputsOf = (meta) => new Set(Object.keys(meta?.outputs ?? {}).map((file) => path.basename(file)));
const previous = fs.existsSync(metaFile) ? outputsOf(JSON.parse(fs.readFileSync(metaFile, 'utf8'))) : new Set();
const current = outputsOf(result.metafile);
const entryNames = new Set(entries.flatMap((file) => [path.basename(file), `${path.basename(file)}.map`]));
fs.mkdirSync(outdir, { recursive: true });
const written = fs.readdirSync(next).sort((a, b) => Number(entryNames.has(a)) - Number(entryNames.has(b)));
for (const file of written) fs.renameSync(path.join(next, file), path.join(outdir, file));
fs.rmSync(next, { recursive: true, force: true });
const keep = (file) => current.has(file) || previous.has(file) || current.has(file.replace(/\.map$/, '')) || previous.has(file.replace(/\.map$/, ''));
for (const file of fs.readdirSync(outdir)) if (file !== 'meta.json' && !keep(file)) fs.rmSync(path.join(outdir, file), { force: true });
fs.writeFileSync(metaFile, JSON.stringify(result.metafile).replaceAll(`${path.relative(root, next)}/`, `${path.relative(root, outdir)}/`));
