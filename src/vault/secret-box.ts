// AES-256-GCM for secrets stored in the database (passwords, client secrets, OAuth tokens).
//
// Stored form: `v1:<kid>:<base64url(iv[12] | ciphertext | tag[16])>`.
// - The key id lets several keys coexist, so a key can be rotated without a flag day: the first key
//   encrypts, every configured key decrypts, and a value names the key that made it.
// - The optional context (e.g. 'outgoing_servers.password:12') is bound in as additional authenticated
//   data, so a ciphertext copied into another column or row fails to decrypt instead of leaking there.
// Error messages name key ids and contexts only; never the value, the plaintext, or key material.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

import { AppError } from '../lib/errors.js';

const FORMAT_VERSION = 'v1';
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_ID_PATTERN = /^[0-9a-f]{8}$/;
const BASE64URL_PATTERN = /^[A-Za-z0-9_-]+$/;
// A JavaScript string may hold half of a surrogate pair; UTF-8 cannot, and would silently turn it into
// U+FFFD, so such a value would not come back as it went in.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
// fatal: authenticated bytes that are not UTF-8 are an error, not replacement characters.
// ignoreBOM: a secret that starts with U+FEFF keeps it.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// Function properties rather than methods: the box never uses `this`, so its functions may be passed around.
export interface SecretBox {
  /** Encrypts under the first key. The same context must be given to decrypt. */
  encrypt: (plain: string, context?: string) => string;
  /** Decrypts with whichever configured key the value names; throws JUNIPER_ERR_VAULT_KEY otherwise. */
  decrypt: (cipher: string, context?: string) => string;
  /**
   * Returns the value encrypted under the first key, for rotation jobs. A value already under the first
   * key is checked and returned unchanged, so `reencrypt(v) !== v` tells whether a write is needed.
   */
  reencrypt: (cipher: string, context?: string) => string;
  /** Ids of the configured keys, the encrypting one first. */
  readonly keyIds: readonly string[];
}

/** First 8 hex characters of SHA-256 of the key: stable across restarts, and says nothing about the key. */
export function keyIdOf(key: Uint8Array): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 8);
}

/** True when the value has the shape of a vault ciphertext (it may still fail to decrypt). */
export function isVaultCiphertext(value: string): boolean {
  const parts = value.split(':');
  return (
    parts.length === 3 &&
    parts[0] === FORMAT_VERSION &&
    KEY_ID_PATTERN.test(parts[1] ?? '') &&
    BASE64URL_PATTERN.test(parts[2] ?? '')
  );
}

/** The id of the key a ciphertext was made with; throws JUNIPER_ERR_VAULT_KEY when it is no ciphertext. */
export function ciphertextKeyId(cipher: string, context?: string): string {
  return parse(cipher, context).kid;
}

export function createSecretBox(keys: readonly Uint8Array[]): SecretBox {
  if (keys.length === 0) {
    throw new AppError('JUNIPER_ERR_CONFIG', 'The vault needs at least one key.');
  }
  const byId = new Map<string, Buffer>();
  keys.forEach((key, i) => {
    if (key.length !== KEY_BYTES) {
      throw new AppError('JUNIPER_ERR_CONFIG', `Vault key ${i + 1} is ${key.length} bytes; AES-256 needs ${KEY_BYTES}.`);
    }
    const id = keyIdOf(key);
    const known = byId.get(id);
    // The same key listed twice is harmless; two different keys sharing 32 bits of hash is not, because
    // a value could no longer say which key made it.
    if (known && !known.equals(key)) {
      throw new AppError('JUNIPER_ERR_CONFIG', `Two different vault keys share the key id ${id}; replace one of them.`);
    }
    // A private copy: the caller may reuse or wipe its buffers.
    if (!known) byId.set(id, Buffer.from(key));
  });
  const keyIds = Object.freeze([...byId.keys()]);
  const currentId = keyIds[0] as string;
  const currentKey = byId.get(currentId) as Buffer;

  function encrypt(plain: string, context?: string): string {
    if (LONE_SURROGATE.test(plain)) {
      throw new AppError(
        'JUNIPER_ERR_VALIDATION',
        `The secret${describe(context)} is not valid Unicode text (it holds half of a surrogate pair) and cannot be stored.`,
      );
    }
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', currentKey, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(aad(currentId, context));
    const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    const packed = Buffer.concat([iv, body, cipher.getAuthTag()]);
    return `${FORMAT_VERSION}:${currentId}:${packed.toString('base64url')}`;
  }

  function decrypt(value: string, context?: string): string {
    const { kid, iv, body, tag } = parse(value, context);
    const key = byId.get(kid);
    if (!key) {
      throw new AppError(
        'JUNIPER_ERR_VAULT_KEY',
        `Cannot decrypt the secret${describe(context)}: it was encrypted with key id ${kid}, which is not configured; ` +
          `the configured key ids are [${keyIds.join(', ')}]. Set JUNIPER_SECRET_KEY to the key that was used ` +
          `(keep old keys after the new one, comma-separated), or restore the vault.key file that made it.`,
        { details: { keyId: kid, configuredKeyIds: [...keyIds], context } },
      );
    }
    let plain: Buffer;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(aad(kid, context));
      decipher.setAuthTag(tag);
      plain = Buffer.concat([decipher.update(body), decipher.final()]);
    } catch (cause) {
      // GCM cannot tell a changed value from a wrong key or a wrong context; say all three.
      const elsewhere = context === undefined ? '' : `, or it belongs to another field or record than ${context}`;
      throw new AppError(
        'JUNIPER_ERR_VAULT_KEY',
        `Cannot decrypt the secret${describe(context)}: it does not decrypt with key ${kid}: ` +
          `the value was changed or the key is wrong${elsewhere}. Enter the secret again to store it anew.`,
        { cause, details: { keyId: kid, context } },
      );
    }
    try {
      return utf8.decode(plain);
    } catch (cause) {
      throw new AppError(
        'JUNIPER_ERR_VAULT_KEY',
        `Cannot decrypt the secret${describe(context)}: it decrypts with key ${kid} but is not UTF-8 text, so it was not made by Juniper's vault.`,
        { cause, details: { keyId: kid, context } },
      );
    } finally {
      plain.fill(0);
    }
  }

  function reencrypt(value: string, context?: string): string {
    const plain = decrypt(value, context);
    return parse(value, context).kid === currentId ? value : encrypt(plain, context);
  }

  return Object.freeze({ encrypt, decrypt, reencrypt, keyIds });
}

// The header is authenticated too, so the version and key id cannot be swapped underneath the data.
function aad(kid: string, context: string | undefined): Buffer {
  return Buffer.from(`${FORMAT_VERSION}:${kid}:${context ?? ''}`, 'utf8');
}

function describe(context: string | undefined): string {
  return context === undefined ? '' : ` for ${context}`;
}

function parse(value: string, context: string | undefined): { kid: string; iv: Buffer; body: Buffer; tag: Buffer } {
  // The value is never quoted back: a "malformed ciphertext" is often a secret stored in plain text.
  const malformed = (why: string): AppError =>
    new AppError(
      'JUNIPER_ERR_VAULT_KEY',
      `Cannot decrypt the secret${describe(context)}: the stored value is not a vault ciphertext (${why}; ` +
        `expected "${FORMAT_VERSION}:<key id>:<data>"). If it was stored in plain text or edited by hand, enter the secret again.`,
      { details: { context } },
    );
  const parts = value.split(':');
  const version = parts[0] ?? '';
  if (/^v\d+$/.test(version) && version !== FORMAT_VERSION) {
    throw new AppError(
      'JUNIPER_ERR_VAULT_KEY',
      `Cannot decrypt the secret${describe(context)}: it uses vault format ${version}, which this version of Juniper does not know; upgrade Juniper.`,
      { details: { context, format: version } },
    );
  }
  if (parts.length !== 3 || version !== FORMAT_VERSION) throw malformed('wrong prefix or number of parts');
  const [, kid = '', data = ''] = parts;
  if (!KEY_ID_PATTERN.test(kid)) throw malformed('the key id is not 8 hex characters');
  if (!BASE64URL_PATTERN.test(data)) throw malformed('the data is not base64url');
  const packed = Buffer.from(data, 'base64url');
  if (packed.length < IV_BYTES + TAG_BYTES) throw malformed('the data is too short');
  return {
    kid,
    iv: packed.subarray(0, IV_BYTES),
    body: packed.subarray(IV_BYTES, packed.length - TAG_BYTES),
    tag: packed.subarray(packed.length - TAG_BYTES),
  };
}
