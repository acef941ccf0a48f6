// Password hashing for sign-in, with scrypt from node:crypto (no native dependency to build).
//
// Stored form: `scrypt$N$r$p$<salt base64>$<hash base64>`. The parameters travel with each hash, so they
// can be raised later: old hashes still verify, and needsRehash() says when to store a new one at sign-in.
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import type { ScryptOptions } from 'node:crypto';

import { AppError } from '../lib/errors.js';

export const PASSWORD_MIN_LENGTH = 10;
export const PASSWORD_MAX_LENGTH = 1024;

// 2^15 × 8 × 128 bytes = 32 MiB and about 0.1 s per hash on a current server core: costly for an offline
// attacker, still fine for a sign-in.
const PRODUCTION = { N: 2 ** 15, r: 8, p: 1, saltBytes: 16, keyBytes: 64 } as const;

// Bounds for hashes read back from the database: a tampered row must not be able to ask for gigabytes
// of memory or minutes of CPU.
const LIMITS = { minLogN: 10, maxLogN: 20, maxR: 32, maxP: 16, minSalt: 16, maxSalt: 64, minKey: 32, maxKey: 128 };

let CURRENT: { readonly N: number; readonly r: number; readonly p: number; readonly saltBytes: number; readonly keyBytes: number } = PRODUCTION;

/**
 * For the test suite's own processes only (scripts/test-password-cost.mjs preloads it): with `cheap`, new hashes
 * and the dummy verification use N = 2^10, the least a stored hash may have, instead of 2^15. The suite hashes
 * hundreds of passwords, at 0.1 s of CPU each. Every hash carries its parameters, so verifying is the same
 * code either way. Nothing in Juniper calls this, and no setting or environment variable reaches it: the
 * `juniper` processes the tests start hash at the production cost.
 */
export function passwordCostForTests(cheap: boolean): void {
  CURRENT = cheap ? { ...PRODUCTION, N: 2 ** LIMITS.minLogN } : PRODUCTION;
}

const DUMMY_SALT = Buffer.alloc(PRODUCTION.saltBytes, 0x5a);

const STORED_PATTERN = /^scrypt\$(\d{1,8})\$(\d{1,2})\$(\d{1,2})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;

interface ParsedHash {
  readonly N: number;
  readonly r: number;
  readonly p: number;
  readonly salt: Buffer;
  readonly hash: Buffer;
}

/**
 * Throws JUNIPER_ERR_VALIDATION unless the password has 10 to 1024 characters (Unicode code points after
 * NFKC). Length is the only rule: composition rules make passwords harder to remember, not to guess.
 */
export function checkPasswordPolicy(password: string): void {
  const length = [...normalize(password)].length;
  if (length < PASSWORD_MIN_LENGTH) {
    throw new AppError('JUNIPER_ERR_VALIDATION', `The password must be at least ${PASSWORD_MIN_LENGTH} characters long.`, {
      details: { field: 'password', rule: 'min_length', min: PASSWORD_MIN_LENGTH },
    });
  }
  if (length > PASSWORD_MAX_LENGTH) {
    throw new AppError('JUNIPER_ERR_VALIDATION', `The password must be at most ${PASSWORD_MAX_LENGTH} characters long.`, {
      details: { field: 'password', rule: 'max_length', max: PASSWORD_MAX_LENGTH },
    });
  }
}

/** Checks the policy, then hashes with a fresh salt and the current parameters. */
export async function hashPassword(password: string): Promise<string> {
  checkPasswordPolicy(password);
  const salt = randomBytes(CURRENT.saltBytes);
  const hash = await derive(password, salt, CURRENT.N, CURRENT.r, CURRENT.p, CURRENT.keyBytes);
  return ['scrypt', CURRENT.N, CURRENT.r, CURRENT.p, salt.toString('base64'), hash.toString('base64')].join('$');
}

/**
 * True when the password matches. A stored value that is not a hash of ours throws JUNIPER_ERR_INTERNAL:
 * that is broken data to fix, not a wrong password to report to the user.
 */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parsed = parseStored(stored);
  const candidate = await derive(password, parsed.salt, parsed.N, parsed.r, parsed.p, parsed.hash.length);
  return timingSafeEqual(candidate, parsed.hash);
}

/** True when the hash was made with other parameters than today's; store a new hash after a good sign-in. */
export function needsRehash(stored: string): boolean {
  const { N, r, p, salt, hash } = parseStored(stored);
  return N !== CURRENT.N || r !== CURRENT.r || p !== CURRENT.p || salt.length !== CURRENT.saltBytes || hash.length !== CURRENT.keyBytes;
}

/**
 * Spends the time of one verification and returns false. Call it when the login does not exist, so that
 * "no such user" and "wrong password" take equally long and the response time does not list the users.
 */
export async function dummyVerifyPassword(password: string): Promise<false> {
  await derive(password, DUMMY_SALT, CURRENT.N, CURRENT.r, CURRENT.p, CURRENT.keyBytes);
  return false;
}

// NFKC so the same password typed on systems that compose characters differently (macOS input methods
// produce decomposed forms) is the same password. NIST SP 800-63B recommends it.
function normalize(password: string): string {
  return password.normalize('NFKC');
}

function derive(password: string, salt: Buffer, N: number, r: number, p: number, keyBytes: number): Promise<Buffer> {
  // Node refuses scrypt above maxmem (32 MiB by default), which N = 2^15, r = 8 just exceeds.
  const options: ScryptOptions = { N, r, p, maxmem: 128 * r * (N + p + 2) + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scrypt(Buffer.from(normalize(password), 'utf8'), salt, keyBytes, options, (err, key) => {
      if (err) reject(new AppError('JUNIPER_ERR_INTERNAL', 'Password hashing failed.', { cause: err }));
      else resolve(key);
    });
  });
}

function parseStored(stored: string): ParsedHash {
  const bad = (why: string): AppError =>
    new AppError(
      'JUNIPER_ERR_INTERNAL',
      `The stored password hash is not usable (${why}; expected scrypt$N$r$p$salt$hash). Set a new password for this user.`,
      { details: { reason: why } },
    );
  const m = STORED_PATTERN.exec(stored);
  if (!m) throw bad('unknown format');
  const [, nText = '', rText = '', pText = '', saltText = '', hashText = ''] = m;
  const N = Number(nText);
  const r = Number(rText);
  const p = Number(pText);
  const logN = Math.log2(N);
  if (!Number.isInteger(logN) || logN < LIMITS.minLogN || logN > LIMITS.maxLogN) throw bad('N out of range');
  if (r < 1 || r > LIMITS.maxR) throw bad('r out of range');
  if (p < 1 || p > LIMITS.maxP) throw bad('p out of range');
  const salt = Buffer.from(saltText, 'base64');
  const hash = Buffer.from(hashText, 'base64');
  if (salt.length < LIMITS.minSalt || salt.length > LIMITS.maxSalt) throw bad('salt length out of range');
  if (hash.length < LIMITS.minKey || hash.length > LIMITS.maxKey) throw bad('hash length out of range');
  return { N, r, p, salt, hash };
}
