import fs from 'node:fs';
import path from 'node:path';
import { renderErrorDocs } from '../src/lib/error-docs.js';

fs.writeFileSync(path.resolve(import.meta.dirname, '../docs/errors.md'), renderErrorDocs());
console.log('docs/errors.md written');
