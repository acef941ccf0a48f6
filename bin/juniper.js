#!/usr/bin/env node
// Runs the compiled CLI (built by `npm install` / `npm run build` into dist/).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/src/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  console.error('juniper: dist/ is missing. Run `npm install` (or `npm run build`) in the Juniper folder first.');
  process.exit(1);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
