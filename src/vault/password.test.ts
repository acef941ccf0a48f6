import assert from 'node:assert/strict';
import { randomBytes, scryptSync } from 'node:crypto';
import { before, describe, it } from 'node:test';

import { AppError } from '../lib/errors.js';
import { checkPasswordPolicy, dummyVerifyPassword, hashPassword, needsRehash, passwordCostForTests, verifyPassword } from './password.js';

const PASSWORD = 'tr0ub4dor&3-but-longer';

/** A hash in our format made directly with scrypt, to test reading hashes with other parameters. */
function legacyHash(password: string, N: number, keyBytes = 64): string {
  const salt = randomBytes(16);
  const hash = scryptSync(password, salt, keyBytes, { N, r: 8, p: 1, maxmem: 64 * 1024 * 1024 });
  return `scrypt$${N}$8$1$${salt.toString('base64')}$${hash.toString('base64')}`;
}

const isAppError = (code: string) => (e: unknown) => e instanceof AppError && e.code === code;

describe('password hashing', () => {
  // The production cost, which the rest of the suite's processes lower (scripts/test-password-cost.mjs).
  before(() => passwordCostForTests(false));

  it('hashes to scrypt$N$r$p$salt$hash with N=2^15, r=8, p=1, a 16-byte salt and a 64-byte key', async () => {
    const stored = await hashPassword(PASSWORD);
    const m = /^scrypt\$32768\$8\$1\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(stored);
    assert.ok(m, stored);
    assert.equal(Buffer.from(m[1] ?? '', 'base64').length, 16);
    assert.equal(Buffer.from(m[2] ?? '', 'base64').length, 64);
    assert.ok(!stored.includes(PASSWORD));
  });

  it('salts every hash, so equal passwords give different hashes', async () => {
    const [a, b] = await Promise.all([hashPassword(PASSWORD), hashPassword(PASSWORD)]);
    assert.notEqual(a, b);
  });

  it('verifies the right password and rejects wrong ones', async () => {
    const stored = await hashPassword(PASSWORD);
    assert.equal(await verifyPassword(PASSWORD, stored), true);
    for (const wrong of ['', PASSWORD.slice(0, -1), `${PASSWORD} `, PASSWORD.toUpperCase()]) {
      assert.equal(await verifyPassword(wrong, stored), false, JSON.stringify(wrong));
    }
  });

  it('treats composed and decomposed spellings of a password as the same (NFKC)', async () => {
    const stored = await hashPassword('Äpfel und Bäume'.normalize('NFC'));
    assert.equal(await verifyPassword('Äpfel und Bäume'.normalize('NFD'), stored), true);
  });

  it('verifies hashes made with other parameters, and says they need rehashing', async () => {
    const old = legacyHash(PASSWORD, 2 ** 14);
    assert.equal(await verifyPassword(PASSWORD, old), true);
    assert.equal(await verifyPassword('not the password', old), false);
    assert.equal(needsRehash(old), true);
    assert.equal(needsRehash(legacyHash(PASSWORD, 2 ** 15, 32)), true);
    assert.equal(needsRehash(await hashPassword(PASSWORD)), false);
  });

  describe('a malformed stored hash is an error, not a wrong password', () => {
    const salt = Buffer.alloc(16, 1).toString('base64');
    const hash = Buffer.alloc(64, 2).toString('base64');
    const cases: Array<[string, string, RegExp]> = [
      ['empty', '', /unknown format/],
      ['a plain-text password', PASSWORD, /unknown format/],
      ['another algorithm', `$argon2id$v=19$m=65536,t=3,p=4$${salt}$${hash}`, /unknown format/],
      ['missing hash', `scrypt$32768$8$1$${salt}`, /unknown format/],
      ['N not a power of two', `scrypt$30000$8$1$${salt}$${hash}`, /N out of range/],
      ['N too large to compute (2^24)', `scrypt$16777216$8$1$${salt}$${hash}`, /N out of range/],
      ['N too small (2^4)', `scrypt$16$8$1$${salt}$${hash}`, /N out of range/],
      ['r zero', `scrypt$32768$0$1$${salt}$${hash}`, /r out of range/],
      ['p too large', `scrypt$32768$8$99$${salt}$${hash}`, /p out of range/],
      ['salt too short', `scrypt$32768$8$1$AAAA$${hash}`, /salt length/],
      ['hash too short', `scrypt$32768$8$1$${salt}$AAAA`, /hash length/],
    ];
    for (const [name, stored, pattern] of cases) {
      it(name, async () => {
        await assert.rejects(verifyPassword(PASSWORD, stored), (e: unknown) => {
          assert.ok(isAppError('JUNIPER_ERR_INTERNAL')(e));
          assert.match((e as AppError).message, pattern);
          assert.match((e as AppError).message, /Set a new password/);
          assert.ok(!(e as AppError).message.includes(PASSWORD));
          return true;
        });
        assert.throws(() => needsRehash(stored), isAppError('JUNIPER_ERR_INTERNAL'));
      });
    }
  });

  it('the tests\' lower cost is N=2^10, the least a stored hash may have, and back to 2^15 when switched off', async () => {
    passwordCostForTests(true);
    try {
      const stored = await hashPassword(PASSWORD);
      assert.match(stored, /^scrypt\$1024\$8\$1\$/);
      assert.equal(await verifyPassword(PASSWORD, stored), true);
      assert.equal(needsRehash(stored), false);
    } finally {
      passwordCostForTests(false);
    }
    assert.match(await hashPassword(PASSWORD), /^scrypt\$32768\$8\$1\$/);
  });

  it('dummyVerifyPassword takes about as long as a real verification and returns false', async () => {
    const stored = await hashPassword(PASSWORD);
    let t = performance.now();
    await verifyPassword(PASSWORD, stored);
    const real = performance.now() - t;
    t = performance.now();
    assert.equal(await dummyVerifyPassword(PASSWORD), false);
    const dummy = performance.now() - t;
    assert.ok(dummy > real / 4, `dummy ${dummy.toFixed(1)} ms vs real ${real.toFixed(1)} ms`);
  });
});

describe('password policy', () => {
  const accepted: Array<[string, string]> = [
    ['exactly 10 characters', 'a'.repeat(10)],
    ['1024 characters', 'a'.repeat(1024)],
    ['10 emoji count as 10 characters', '🔑'.repeat(10)],
    ['a passphrase with spaces', 'correct horse battery staple'],
  ];
  for (const [name, pw] of accepted) it(`accepts ${name}`, () => assert.doesNotThrow(() => checkPasswordPolicy(pw)));

  const refused: Array<[string, string, RegExp]> = [
    ['empty', '', /at least 10 characters/],
    ['9 characters', 'a'.repeat(9), /at least 10 characters/],
    ['5 emoji (10 UTF-16 units, 5 characters)', '🔑'.repeat(5), /at least 10 characters/],
    ['1025 characters', 'a'.repeat(1025), /at most 1024 characters/],
  ];
  for (const [name, pw, pattern] of refused) {
    it(`refuses ${name}`, () => {
      assert.throws(
        () => checkPasswordPolicy(pw),
        (e: unknown) => isAppError('JUNIPER_ERR_VALIDATION')(e) && pattern.test((e as AppError).message) && (e as AppError).status === 400,
      );
    });
  }

  it('hashPassword applies the policy before spending time on scrypt', async () => {
    await assert.rejects(hashPassword('short'), isAppError('JUNIPER_ERR_VALIDATION'));
  });
});
