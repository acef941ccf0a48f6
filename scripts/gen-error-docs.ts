import fs from 'node:fs';
import path from 'node:path';
import { renderErrorDocs } from '../src/lib/error-docs.js';
import { withAadstsTable } from '../src/oauth/aadsts-docs.js';

fs.writeFileSync(path.resolve(import.meta.dirname, '../docs/errors.md'), renderErrorDocs());
console.log('docs/errors.md written');
const troubleshooting = path.resolve(import.meta.dirname, '../docs/troubleshooting.md');
fs.writeFileSync(troubleshooting, withAadstsTable(fs.readFileSync(troubleshooting, 'utf8')));
console.log('docs/troubleshooting.md: AADSTS table written');
