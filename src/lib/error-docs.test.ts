import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { renderErrorDocs } from './error-docs.js';
import { errorCatalogue } from './errors.js';
import { projectRoot } from '../../test/helpers/project-root.js';

describe('error catalogue', () => {
  it('matches docs/errors.md (regenerate with `npm run docs:errors`)', () => {
    const docs = fs.readFileSync(path.join(projectRoot, 'docs/errors.md'), 'utf8');
    assert.equal(docs, renderErrorDocs());
  });
  it('gives every code a JUNIPER_ERR_ name, an HTTP error status and a sentence', () => {
    for (const [code, e] of Object.entries(errorCatalogue)) {
      assert.match(code, /^JUNIPER_ERR_[A-Z_]+$/);
      assert.ok(e.status >= 400 && e.status <= 599, code);
      assert.match(e.message, /^[A-Z].*\.$/s, `${code}: a sentence`);
    }
  });
});
