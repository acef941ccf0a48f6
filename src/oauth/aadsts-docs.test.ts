import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { renderAadstsTable, withAadstsTable } from './aadsts-docs.js';
import { projectRoot } from '../../test/helpers/project-root.js';

describe('docs/troubleshooting.md', () => {
  it('holds the AADSTS table exactly as Juniper explains the codes (run `npm run docs:errors` after changing oauth-errors.ts)', () => {
    const doc = fs.readFileSync(path.join(projectRoot, 'docs/troubleshooting.md'), 'utf8');
    assert.ok(doc.includes(renderAadstsTable()));
    assert.equal(withAadstsTable(doc), doc);
  });
  it('lists the codes an admin meets most: expired secret, wrong secret value, unregistered redirect URI, consent', () => {
    for (const code of [7000222, 7000215, 50011, 65001, 700082]) assert.match(renderAadstsTable(), new RegExp(`^\\| AADSTS${code} \\|`, 'm'));
  });
});
