import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { AppError } from '../lib/errors.js';
import { deriveHmacKey, hmac, randomToken, sha256Hex, timingSafeEqualStr } from './hmac.js';

describe('sha256Hex', () => {
  const cases: Array<[string, string | Uint8Array, string]> = [
    ['empty string (FIPS 180-2 vector)', '', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['"abc" (FIPS 180-2 vector)', 'abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
    ['bytes hash like the same UTF-8 string', Buffer.from('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
  ];
  for (const [name, input, expected] of cases) it(name, () => assert.equal(sha256Hex(input), expected));
});

describe('hmac', () => {
  it('is HMAC-SHA256 in hex (RFC 4231 test case 2)', () => {
    assert.equal(
      hmac(Buffer.from('Jefe'), 'what do ya want for nothing?'),
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    );
  });

  it('derives a stable key per vault key that is not the vault key', () => {
    const vaultKey = Buffer.alloc(32, 7);
    const derived = deriveHmacKey(vaultKey);
    assert.equal(derived.length, 32);
    assert.deepEqual(deriveHmacKey(Buffer.alloc(32, 7)), derived);
    assert.notDeepEqual(derived, vaultKey);
    assert.notDeepEqual(deriveHmacKey(Buffer.alloc(32, 8)), derived);
    assert.notEqual(hmac(derived, 'x'), hmac(vaultKey, 'x'));
  });
});

describe('randomToken', () => {
  it('is 32 bytes of base64url by default, and never repeats', () => {
    const tokens = Array.from({ length: 200 }, () => randomToken());
    for (const t of tokens) assert.match(t, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(new Set(tokens).size, tokens.length);
  });

  it('takes a byte count', () => {
    for (const bytes of [1, 12, 15, 48]) assert.equal(Buffer.from(randomToken(bytes), 'base64url').length, bytes);
  });

  describe('refuses nonsensical byte counts', () => {
    for (const bytes of [0, -1, 16.5, 1025, Number.NaN]) {
      it(String(bytes), () => assert.throws(() => randomToken(bytes), (e) => e instanceof AppError && e.code === 'JUNIPER_ERR_INTERNAL'));
    }
  });
});

describe('timingSafeEqualStr', () => {
  const cases: Array<[string, string, boolean]> = [
    ['same', 'same', true],
    ['', '', true],
    ['a', 'b', false],
    ['short', 'shorter', false],
    ['prefix', 'prefi', false],
    ['é', 'e\u0301', false],
    ['token-123', 'token-124', false],
  ];
  for (const [a, b, expected] of cases) {
    it(`${JSON.stringify(a)} vs ${JSON.stringify(b)} → ${expected}`, () => assert.equal(timingSafeEqualStr(a, b), expected));
  }
});
