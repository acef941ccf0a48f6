import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dedupeKeyOf, headerSection, messageIdKey, normaliseMessageId, oversizeKey, rawKey, storableText } from './dedupe.js';

describe('dedupe keys and quarantine text', () => {
  it('normalises Message-IDs: folding whitespace and missing brackets do not make another message', () => {
    const cases: [string, string][] = [
      ['<a@b.test>', '<a@b.test>'],
      ['a@b.test', '<a@b.test>'],
      [' <a@b.test> ', '<a@b.test>'],
      ['<a@\r\n b.test>', '<a@b.test>'],
      ['<<a@b.test>>', '<a@b.test>'],
      ['<A@b.test>', '<A@b.test>'],
    ];
    for (const [id, normal] of cases) assert.equal(normaliseMessageId(id), normal, id);
  });

  it('keys on a fixed-size hash whatever the Message-ID length, and on the bytes when there is none', () => {
    const raw = Buffer.from('Subject: x\r\n\r\nbody');
    const huge = `<${'x'.repeat(2 * 1024 * 1024)}@b.test>`;
    assert.match(dedupeKeyOf(huge, raw), /^mid:[0-9a-f]{64}$/);
    assert.equal(dedupeKeyOf('<a@b.test>', raw), dedupeKeyOf(' a@b.test', Buffer.from('other bytes')), 'the same id is the same message');
    assert.notEqual(dedupeKeyOf('<a@b.test>', raw), dedupeKeyOf('<A@b.test>', raw), 'the local part is case-sensitive');
    assert.equal(dedupeKeyOf(null, raw), rawKey(raw));
    assert.equal(dedupeKeyOf('  ', raw), rawKey(raw));
    assert.equal(dedupeKeyOf('<>', raw), rawKey(raw), 'an empty id names nothing');
    assert.match(rawKey(raw), /^sha256:[0-9a-f]{64}$/);
    assert.equal(messageIdKey('<a@b.test>'), dedupeKeyOf('<a@b.test>', raw));
    assert.match(oversizeKey(raw, 99), /^oversize:[0-9a-f]{64}:99$/);
  });

  it('cuts the header section at the first blank line (CRLF or LF) and at the limit', () => {
    const cases: [string, number, string][] = [
      ['A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore', 1000, 'A: 1\r\nB: 2\r\n\r\n'],
      ['A: 1\nB: 2\n\nbody', 1000, 'A: 1\nB: 2\n\n'],
      ['A: 1\r\nno blank line', 1000, 'A: 1\r\nno blank line'],
      ['A: 1\r\nB: 2\r\n\r\nbody', 6, 'A: 1\r\n'],
      ['', 10, ''],
    ];
    for (const [raw, limit, header] of cases) assert.equal(headerSection(Buffer.from(raw), limit).toString(), header, JSON.stringify(raw));
  });

  it('makes any text storable: NUL removed, length capped', () => {
    assert.equal(storableText('a\u0000b', 10), 'ab');
    assert.equal(storableText('abcdef', 4), 'abc…');
    assert.equal(storableText('abc', 3), 'abc');
  });
});
