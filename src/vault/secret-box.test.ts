import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { describe, it } from 'node:test';

import { AppError } from '../lib/errors.js';
import type { ErrorCode } from '../lib/errors.js';
import { ciphertextKeyId, createSecretBox, isVaultCiphertext, keyIdOf } from './secret-box.js';

const OLD_KEY = Buffer.alloc(32, 0x11);
const NEW_KEY = Buffer.alloc(32, 0x22);
const OLD_ID = keyIdOf(OLD_KEY);
const NEW_ID = keyIdOf(NEW_KEY);
const SECRET = 'correct horse battery staple';

/** Asserts an AppError with the code, and that no secret text leaked into its message or details. */
function throwsApp(fn: () => unknown, code: ErrorCode, pattern: RegExp, mustNotContain: readonly string[] = [SECRET]): AppError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof AppError, `expected an AppError, got ${String(caught)}`);
  assert.equal(caught.code, code);
  assert.match(caught.message, pattern);
  const exposed = caught.message + JSON.stringify(caught.details ?? {});
  for (const s of mustNotContain) assert.ok(!exposed.includes(s), `error exposes ${JSON.stringify(s)}: ${caught.message}`);
  for (const key of [OLD_KEY, NEW_KEY]) {
    assert.ok(!exposed.includes(key.toString('hex')) && !exposed.includes(key.toString('base64')), 'error exposes a key');
  }
  return caught;
}

/** Flips one bit of the decoded payload at `index` (negative counts from the end). */
function flipByte(cipher: string, index: number): string {
  const [version, kid, data] = cipher.split(':') as [string, string, string];
  const packed = Buffer.from(data, 'base64url');
  const i = index < 0 ? packed.length + index : index;
  packed[i] = (packed[i] as number) ^ 0x01;
  return `${version}:${kid}:${packed.toString('base64url')}`;
}

describe('secret box', () => {
  const box = createSecretBox([OLD_KEY]);

  describe('round trip returns exactly the plaintext', () => {
    const cases: Array<[string, string]> = [
      ['ascii', SECRET],
      ['empty string', ''],
      ['unicode: accents, CJK, emoji', 'pässwörd ✓ 密码 🔑 Ωμέγα'],
      ['leading byte-order mark kept', '\uFEFFstarts with a BOM'],
      ['separators and control characters', 'a:b:c\r\n\t\0end'],
      ['long value (OAuth refresh tokens are long)', 'x'.repeat(100_000)],
    ];
    for (const [name, plain] of cases) {
      it(name, () => {
        assert.equal(box.decrypt(box.encrypt(plain)), plain);
        assert.equal(box.decrypt(box.encrypt(plain, 'ctx:1'), 'ctx:1'), plain);
      });
    }
  });

  it('writes v1:<kid>:<base64url> where kid is the first 8 hex chars of SHA-256 of the key', () => {
    const cipher = box.encrypt(SECRET);
    assert.match(cipher, /^v1:[0-9a-f]{8}:[A-Za-z0-9_-]+$/);
    assert.equal(OLD_ID, createHash('sha256').update(OLD_KEY).digest('hex').slice(0, 8));
    assert.equal(ciphertextKeyId(cipher), OLD_ID);
    assert.ok(!cipher.includes(SECRET));
    // 12-byte IV + plaintext + 16-byte tag
    assert.equal(Buffer.from(cipher.split(':')[2] ?? '', 'base64url').length, 12 + Buffer.byteLength(SECRET) + 16);
  });

  it('uses a fresh IV every time, so equal secrets do not look equal', () => {
    const ciphers = Array.from({ length: 50 }, () => box.encrypt(SECRET));
    assert.equal(new Set(ciphers).size, ciphers.length);
    const ivs = ciphers.map((c) => Buffer.from(c.split(':')[2] ?? '', 'base64url').subarray(0, 12).toString('hex'));
    assert.equal(new Set(ivs).size, ivs.length);
  });

  describe('detects tampering anywhere in the payload', () => {
    const cipher = box.encrypt(SECRET);
    const cases: Array<[string, number]> = [
      ['first IV byte', 0],
      ['first ciphertext byte', 12],
      ['last ciphertext byte', -17],
      ['last tag byte', -1],
    ];
    for (const [name, index] of cases) {
      it(name, () => {
        throwsApp(() => box.decrypt(flipByte(cipher, index)), 'JUNIPER_ERR_VAULT_KEY', new RegExp(`does not decrypt with key ${OLD_ID}: the value was changed or the key is wrong`));
      });
    }
    it('a truncated tag', () => {
      const [v, k, d] = cipher.split(':') as [string, string, string];
      const shorter = `${v}:${k}:${Buffer.from(d, 'base64url').subarray(0, -1).toString('base64url')}`;
      throwsApp(() => box.decrypt(shorter), 'JUNIPER_ERR_VAULT_KEY', /does not decrypt/);
    });
  });

  it('a wrong key that claims the right key id fails authentication, naming the key id and no plaintext', () => {
    const impostor = box.encrypt(SECRET).replace(`:${OLD_ID}:`, `:${NEW_ID}:`);
    const err = throwsApp(() => createSecretBox([NEW_KEY]).decrypt(impostor), 'JUNIPER_ERR_VAULT_KEY', /does not decrypt with key/);
    assert.match(err.message, new RegExp(NEW_ID));
  });

  it('an unknown key id says which key is missing, which are configured, and how to fix it', () => {
    const cipher = box.encrypt(SECRET, 'outgoing_servers.password:12');
    const other = createSecretBox([NEW_KEY, randomBytes(32)]);
    const err = throwsApp(() => other.decrypt(cipher, 'outgoing_servers.password:12'), 'JUNIPER_ERR_VAULT_KEY', /encrypted with key id/);
    assert.match(err.message, new RegExp(`key id ${OLD_ID}, which is not configured`));
    assert.match(err.message, new RegExp(`configured key ids are \\[${other.keyIds.join(', ')}\\]`));
    assert.match(err.message, /set JUNIPER_SECRET_KEY to the key that was used \(keep old keys after the new one, comma-separated\)/i);
    assert.match(err.message, /outgoing_servers\.password:12/);
    assert.equal(err.status, 500);
  });

  describe('rotation', () => {
    const oldBox = createSecretBox([OLD_KEY]);
    const rotated = createSecretBox([NEW_KEY, OLD_KEY]);
    const oldCipher = oldBox.encrypt(SECRET, 'settings.outlook_client_secret');

    it('decrypts values made with the old key when it is kept after the new one', () => {
      assert.equal(rotated.decrypt(oldCipher, 'settings.outlook_client_secret'), SECRET);
    });
    it('encrypts with the first key', () => {
      assert.deepEqual(rotated.keyIds, [NEW_ID, OLD_ID]);
      assert.equal(ciphertextKeyId(rotated.encrypt(SECRET)), NEW_ID);
    });
    it('values made with the new key fail on a box without it', () => {
      throwsApp(() => oldBox.decrypt(rotated.encrypt(SECRET)), 'JUNIPER_ERR_VAULT_KEY', new RegExp(`key id ${NEW_ID}`));
    });
    it('reencrypt moves a value to the first key, keeping its context', () => {
      const moved = rotated.reencrypt(oldCipher, 'settings.outlook_client_secret');
      assert.equal(ciphertextKeyId(moved), NEW_ID);
      assert.equal(createSecretBox([NEW_KEY]).decrypt(moved, 'settings.outlook_client_secret'), SECRET);
      throwsApp(() => rotated.decrypt(moved, 'other'), 'JUNIPER_ERR_VAULT_KEY', /does not decrypt/);
    });
    it('reencrypt returns a value already under the first key unchanged, but still checks it', () => {
      const current = rotated.encrypt(SECRET);
      assert.equal(rotated.reencrypt(current), current);
      throwsApp(() => rotated.reencrypt(flipByte(current, 20)), 'JUNIPER_ERR_VAULT_KEY', /does not decrypt/);
    });
  });

  describe('the context is bound in: a value moved to another field or row does not decrypt', () => {
    const cases: Array<[string, string | undefined, string | undefined]> = [
      ['another row', 'outgoing_servers.password:12', 'outgoing_servers.password:13'],
      ['another column', 'outgoing_servers.password:12', 'outgoing_servers.refresh_token:12'],
      ['context dropped', 'outgoing_servers.password:12', undefined],
      ['context added', undefined, 'outgoing_servers.password:12'],
    ];
    for (const [name, encryptWith, decryptWith] of cases) {
      it(name, () => {
        const cipher = box.encrypt(SECRET, encryptWith);
        const err = throwsApp(() => box.decrypt(cipher, decryptWith), 'JUNIPER_ERR_VAULT_KEY', /does not decrypt with key/);
        if (decryptWith !== undefined) assert.match(err.message, /belongs to another field or record/);
      });
    }
  });

  describe('malformed input is an error naming the problem, never quoting the value', () => {
    const cases: Array<[string, string, RegExp]> = [
      ['empty', '', /not a vault ciphertext/],
      ['a password stored in plain text', SECRET, /not a vault ciphertext.*enter the secret again/],
      ['missing data', `v1:${OLD_ID}`, /wrong prefix or number of parts/],
      ['extra part', `v1:${OLD_ID}:AAAA:BBBB`, /wrong prefix or number of parts/],
      ['key id not hex', 'v1:zzzzzzzz:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', /key id is not 8 hex/],
      ['data not base64url', `v1:${OLD_ID}:not base64!`, /not base64url/],
      ['data too short for IV and tag', `v1:${OLD_ID}:AAAAAAAA`, /too short/],
      ['a future format', `v2:${OLD_ID}:AAAA`, /vault format v2.*upgrade Juniper/],
    ];
    for (const [name, value, pattern] of cases) {
      it(name, () => {
        throwsApp(() => box.decrypt(value), 'JUNIPER_ERR_VAULT_KEY', pattern, value === '' ? [SECRET] : [SECRET, value]);
      });
    }
  });

  it('refuses to encrypt a string that is not valid Unicode instead of storing a different value', () => {
    throwsApp(() => box.encrypt('half a pair: \uD83D'), 'JUNIPER_ERR_VALIDATION', /not valid Unicode/);
  });

  describe('key list checks', () => {
    it('needs at least one key', () => {
      throwsApp(() => createSecretBox([]), 'JUNIPER_ERR_CONFIG', /at least one key/);
    });
    it('needs 32-byte keys', () => {
      throwsApp(() => createSecretBox([Buffer.alloc(16)]), 'JUNIPER_ERR_CONFIG', /16 bytes; AES-256 needs 32/);
    });
    it('lists a repeated key once', () => {
      assert.deepEqual(createSecretBox([NEW_KEY, OLD_KEY, NEW_KEY]).keyIds, [NEW_ID, OLD_ID]);
    });
    it('keeps its own copy of the keys', () => {
      const key = Buffer.from(NEW_KEY);
      const own = createSecretBox([key]);
      const cipher = own.encrypt(SECRET);
      key.fill(0);
      assert.equal(own.decrypt(cipher), SECRET);
    });
  });

  it('shows no key material when logged or serialised', () => {
    const shown = inspect(box, { depth: 10, showHidden: true }) + JSON.stringify(box);
    assert.ok(!shown.includes(OLD_KEY.toString('hex')) && !shown.includes('17, 17, 17'));
  });

  describe('isVaultCiphertext', () => {
    const cases: Array<[string, string, boolean]> = [
      ['a fresh ciphertext', box.encrypt('x'), true],
      ['plain text', SECRET, false],
      ['empty', '', false],
      ['another format version', `v2:${OLD_ID}:AAAA`, false],
      ['upper-case key id', `v1:${OLD_ID.toUpperCase()}:AAAA`, false],
      ['no data', `v1:${OLD_ID}:`, false],
    ];
    for (const [name, value, expected] of cases) {
      it(`${name} → ${expected}`, () => assert.equal(isVaultCiphertext(value), expected));
    }
  });
});
