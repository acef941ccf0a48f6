// Preloaded (`node --import`) into a child process by worker-footprint.test.ts and cli-footprint.test.ts: on
// exit, writes the npm packages the process has loaded as one line on stderr. CommonJS ones come from require's
// cache (imapflow, libmime, iconv-lite, pg); ES modules (nodemailer's, mailparser's, kysely's own files) from a
// resolve hook, which runs on the loader's thread and so appends each resolved file to a list the exit reads.
// nodemailer's one-file address parser is named apart (nodemailer/lib/addressparser): the enqueue path parses
// addresses with it, which is not loading nodemailer. The built CLI runs bundled (dist/app/, scripts/bundle.mjs):
// a chunk it loads counts as every package the bundler put in it (dist/app/meta.json).
import fs from 'node:fs';
import { createRequire, register } from 'node:module';
import os from 'node:os';
import path from 'node:path';

const list = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-loaded-')), 'esm');
fs.writeFileSync(list, '');
const hook = `
import fs from 'node:fs';
let list;
export function initialize(data) { list = data.list; }
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  if (resolved.url.startsWith('file:') && /\\/node_modules\\/|\\/dist\\/app\\//.test(resolved.url)) fs.appendFileSync(list, resolved.url + '\\n');
  return resolved;
}`;
register(`data:text/javascript,${encodeURIComponent(hook)}`, { data: { list } });

const nameOf = (file) => {
  if (/node_modules\/nodemailer\/dist\/(esm|cjs)\/addressparser\//.test(file)) return 'nodemailer/lib/addressparser';
  return /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(file)?.[1];
};

// The files in a chunk of the bundle, by the chunk's path relative to the checkout (meta.json read once).
let meta;
function bundledFiles(url) {
  const at = url.lastIndexOf('/dist/app/');
  meta ??= JSON.parse(fs.readFileSync(new URL('dist/app/meta.json', url.slice(0, at + 1)), 'utf8'));
  return Object.keys(meta.outputs[url.slice(at + 1)]?.inputs ?? {});
}

const cache = createRequire(import.meta.url).cache;
process.on('exit', () => {
  const resolved = fs.readFileSync(list, 'utf8').split('\n').filter(Boolean);
  const files = [...Object.keys(cache), ...resolved.flatMap((url) => (url.includes('/dist/app/') ? bundledFiles(decodeURIComponent(url)) : [url]))];
  fs.rmSync(path.dirname(list), { recursive: true, force: true });
  const names = new Set(files.flatMap((file) => nameOf(decodeURIComponent(file)) ?? []));
  process.stderr.write(`loaded-packages: ${[...names].sort().join(' ')}\n`);
});
