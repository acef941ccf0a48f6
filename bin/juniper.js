#!/usr/bin/env node
// Runs the built CLI (`npm install` / `npm run build` compile src/ into dist/src/ and bundle it into dist/app/,
// scripts/bundle.mjs).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/app/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  console.error('juniper: dist/ is missing. Run `npm install` (or `npm run build`) in the Juniper folder first.');
  process.exit(1);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
