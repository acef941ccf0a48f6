// Keyed and unkeyed hashes and random tokens.
//
// Which to use: a random token (session id, API key, setup token) has enough entropy that its plain
// SHA-256 is a safe lookup key, and that hash survives a vault key rotation. A keyed HMAC is for values an
// attacker with a copy of the database could otherwise guess and confirm; it changes when the vault key
// rotates, so do not use it for lookups that must outlive a rotation.
import { createHash, createHmac, hash, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

import { AppError } from '../lib/errors.js';

export const HMAC_LABEL = 'juniper-hmac';

/**
 * The HMAC key for a vault key. HKDF with its own label keeps the two uses apart: no HMAC output is ever
 * computed with the AES key itself.
 */
export function deriveHmacKey(vaultKey: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', vaultKey, Buffer.alloc(0), HMAC_LABEL, 32));
}

/** Hex HMAC-SHA256 of `data` under `key` (a key from deriveHmacKey, not the vault key itself). */
export function hmac(key: Uint8Array, data: string): string {
  return createHmac('sha256', key).update(data, 'utf8').digest('hex');
}

export function sha256Hex(data: string | Uint8Array): string {
  // crypto.hash: one call, about a quarter of createHash's cost for short inputs (API keys on every request).
  // A string is hashed as its UTF-8 bytes, as before.
  return hash('sha256', data, 'hex');
}

/** `bytes` random bytes as base64url (43 characters for the default 32): safe in URLs, cookies, headers. */
export function randomToken(bytes = 32): string {
  // Short tokens have uses (display prefixes); anything meant to be unguessable should keep the default.
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > 1024) {
    throw new AppError('JUNIPER_ERR_INTERNAL', `randomToken needs a whole number of bytes from 1 to 1024; got ${bytes}.`);
  }
  return randomBytes(bytes).toString('base64url');
}

/**
 * Compares two strings in time that depends on neither their contents nor their lengths: both are hashed
 * first, so timingSafeEqual always sees equal-length inputs and a length mismatch is not an early exit.
 */
export function timingSafeEqualStr(a: string, b: string): boolean {
  const da = createHash('sha256').update(a, 'utf8').digest();
  const db = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(da, db);
}
