import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isAppError } from '../lib/errors.js';
import { FORM_MAX_FIELDS, formatBytes, parseForm } from './body-limits.js';

describe('body limits', () => {
  it('names sizes as the messages say them', () => {
    assert.equal(formatBytes(64 * 1024), '64 KB');
    assert.equal(formatBytes(1024 * 1024), '1 MB');
    assert.equal(formatBytes(30 * 1024 * 1024), '30 MB');
    assert.equal(formatBytes(1.5 * 1024 * 1024), '1.5 MB');
    assert.equal(formatBytes(500), '500 bytes');
  });

  it('parses a form as browsers encode it: + is a space, a repeated name an array, no prototype', () => {
    const form = parseForm('to=a%40b.test&subject=Hello+there&next=%2Finbox&next=%2F%2Fevil&empty=&bare');
    assert.deepEqual({ ...form }, { to: 'a@b.test', subject: 'Hello there', next: ['/inbox', '//evil'], empty: '', bare: '' });
    assert.equal(Object.getPrototypeOf(form), null);
    assert.equal(parseForm('__proto__=x').__proto__, 'x', 'a field named __proto__ is only a field');
    assert.deepEqual({ ...parseForm('') }, {});
  });

  it(`takes ${FORM_MAX_FIELDS} fields and refuses one more with 413, before decoding any`, () => {
    const fields = (n: number) => Array.from({ length: n }, (_, i) => `k${i}=%E2%82%AC`).join('&');
    assert.equal(Object.keys(parseForm(fields(FORM_MAX_FIELDS))).length, FORM_MAX_FIELDS);
    assert.throws(
      () => parseForm(fields(FORM_MAX_FIELDS + 1)),
      (e: unknown) => isAppError(e) && e.status === 413 && e.code === 'JUNIPER_ERR_TOO_LARGE' && e.message.includes(`more than ${FORM_MAX_FIELDS} fields`),
    );
    // Empty pairs count too: they cost the parser as much.
    assert.throws(() => parseForm('&'.repeat(FORM_MAX_FIELDS)), (e: unknown) => isAppError(e) && e.status === 413);
  });
});
