// Where the vault's keys come from: JUNIPER_SECRET_KEY when set (comma-separated, newest first), else
// `<dataDir>/vault.key`, generated on first start. Losing the key loses every stored secret, so this
// module refuses anything doubtful (short keys, a key file others can read) rather than guessing.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes, scryptSync } from 'node:crypto';
import path from 'node:path';

import { AppError } from '../lib/errors.js';

export const KEY_FILE_NAME = 'vault.key';
export const SECRET_KEY_ENV = 'JUNIPER_SECRET_KEY';
export const PASSPHRASE_MIN_LENGTH = 32;
const KEY_BYTES = 32;

// Passphrases are stretched with scrypt so that a guessable phrase costs an attacker real work per guess.
// The salt is fixed and public on purpose: the same phrase must give the same key on every machine and
// every start, and there is nowhere to keep a per-install salt that is not as fragile as the key itself.
// Changing any of these values changes every passphrase-derived key; never change them in place.
export const PASSPHRASE_SALT = 'juniper-vault-passphrase-v1';
const PASSPHRASE_SCRYPT = { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;

const HEX_KEY = /^[0-9a-fA-F]{64}$/;
// 32 bytes are 43 base64 characters plus one '=' of padding; Node decodes both alphabets.
const BASE64_KEY = /^[A-Za-z0-9+/_-]{43}=?$/;

// A creator that has made the file but not yet written it leaves it empty for a moment.
const EMPTY_FILE_WAIT_MS = 1500;
const EMPTY_FILE_POLL_MS = 25;

export interface LoadVaultKeysOptions {
  readonly dataDir: string;
  /** From JUNIPER_SECRET_KEY, newest first; undefined or empty means "use the key file". */
  readonly secretKeys?: readonly string[] | undefined;
  /**
   * Generate `<dataDir>/vault.key` when there is none (default true). The composition root passes false first
   * and creates the file only once it knows the database holds no secret a new key would orphan.
   */
  readonly create?: boolean;
}

export interface VaultKeys {
  /** 32-byte keys, the encrypting one first; empty only when `create: false` found no key file. */
  readonly keys: readonly Buffer[];
  /** For logs: 'JUNIPER_SECRET_KEY' or the key file's path. */
  readonly source: string;
  /** True when this call generated the key file (worth a log line: back it up). */
  readonly created: boolean;
}

export function loadVaultKeys(options: LoadVaultKeysOptions): VaultKeys {
  const { secretKeys } = options;
  if (secretKeys && secretKeys.length > 0) {
    return {
      keys: secretKeys.map((value, i) => parseSecretKey(value, i, secretKeys.length)),
      source: SECRET_KEY_ENV,
      created: false,
    };
  }
  return loadKeyFile(path.resolve(options.dataDir), options.create ?? true);
}

/**
 * One JUNIPER_SECRET_KEY entry → 32 bytes. Exact-length hex (64) or base64/base64url (43/44) is taken as
 * the key itself; anything else of at least 32 characters is a passphrase and is stretched.
 */
export function parseSecretKey(value: string, index = 0, count = 1): Buffer {
  const decoded = decodeRawKey(value);
  if (decoded) return decoded;
  const length = [...value].length;
  if (length < PASSPHRASE_MIN_LENGTH) {
    const which = count > 1 ? `key ${index + 1} of ${count}` : 'the key';
    throw new AppError(
      'JUNIPER_ERR_CONFIG',
      `${SECRET_KEY_ENV}: ${which} is too short (${length} characters). Each comma-separated key must be ` +
        `32 random bytes written in base64, base64url or hex (for example the output of \`openssl rand -base64 32\`), ` +
        `or a passphrase of at least ${PASSPHRASE_MIN_LENGTH} characters.`,
      { details: { variable: SECRET_KEY_ENV, index, length } },
    );
  }
  return scryptSync(Buffer.from(value, 'utf8'), PASSPHRASE_SALT, KEY_BYTES, PASSPHRASE_SCRYPT);
}

function decodeRawKey(value: string): Buffer | undefined {
  const key = HEX_KEY.test(value)
    ? Buffer.from(value, 'hex')
    : BASE64_KEY.test(value)
      ? Buffer.from(value, 'base64')
      : undefined;
  return key?.length === KEY_BYTES ? key : undefined;
}

function loadKeyFile(dataDir: string, create: boolean): VaultKeys {
  const file = path.join(dataDir, KEY_FILE_NAME);
  if (!create) {
    const found = readKeyFile(file);
    return { keys: found ? [found] : [], source: file, created: false };
  }
  try {
    // 0700 only applies to directories this call creates; an existing data directory is left as it is.
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  } catch (cause) {
    throw new AppError(
      'JUNIPER_ERR_CONFIG',
      `Cannot create the data directory ${dataDir} (${errorCode(cause)}); make it writable for Juniper's user, set JUNIPER_DATA_DIR, or set ${SECRET_KEY_ENV}.`,
      { cause },
    );
  }
  const existing = readKeyFile(file);
  if (existing) return { keys: [existing], source: file, created: false };

  const key = randomBytes(KEY_BYTES);
  if (createKeyFile(file, `${key.toString('base64')}\n`)) return { keys: [key], source: file, created: true };
  // Another process won the race to create it; use its key so both encrypt alike.
  const winner = readKeyFile(file);
  if (!winner) {
    throw new AppError('JUNIPER_ERR_CONFIG', `The vault key file ${file} vanished while Juniper was starting; start again.`);
  }
  return { keys: [winner], source: file, created: false };
}

/** The key in the file, or undefined when there is no file. */
function readKeyFile(file: string): Buffer | undefined {
  const deadline = Date.now() + EMPTY_FILE_WAIT_MS;
  for (;;) {
    let text: string;
    try {
      checkPrivate(file);
      text = readFileSync(file, 'utf8').trim();
    } catch (cause) {
      if (errorCode(cause) === 'ENOENT') return undefined;
      if (cause instanceof AppError) throw cause;
      throw new AppError(
        'JUNIPER_ERR_CONFIG',
        `Cannot read the vault key file ${file} (${errorCode(cause)}); it must be readable by Juniper's user.`,
        { cause },
      );
    }
    if (text !== '') {
      const key = decodeRawKey(text);
      if (key) return key;
      throw new AppError(
        'JUNIPER_ERR_CONFIG',
        `The vault key file ${file} does not hold a key (expected 32 random bytes in base64, as Juniper writes it). ` +
          `Restore it from a backup; only if no secret was ever stored, delete it and Juniper makes a new one.`,
      );
    }
    if (Date.now() >= deadline) {
      throw new AppError(
        'JUNIPER_ERR_CONFIG',
        `The vault key file ${file} is empty: a start was interrupted while creating it. No secret can have been ` +
          `encrypted with an empty key file, so delete it and start again.`,
      );
    }
    sleepSync(EMPTY_FILE_POLL_MS);
  }
}

/** True when this process created the file; false when it already existed. */
function createKeyFile(file: string, content: string): boolean {
  let fd: number;
  try {
    // 'wx' fails with EEXIST instead of overwriting, so of two processes starting together exactly one
    // creates the key and the other reads it. The mode is set at creation; there is no readable window.
    fd = openSync(file, 'wx', 0o600);
  } catch (cause) {
    if (errorCode(cause) === 'EEXIST') return false;
    throw new AppError(
      'JUNIPER_ERR_CONFIG',
      `Cannot create the vault key file ${file} (${errorCode(cause)}); make the data directory writable for Juniper's user, or set ${SECRET_KEY_ENV}.`,
      { cause },
    );
  }
  try {
    writeSync(fd, content);
    // Secrets may be committed to the database moments after this; a key that was still only in the page
    // cache at a power cut would leave them undecryptable.
    fsyncSync(fd);
  } catch (cause) {
    closeSync(fd);
    // An empty or partial key file would stop every later start; nothing was encrypted with it yet.
    try {
      unlinkSync(file);
    } catch {
      // The write error below is the one worth reporting.
    }
    throw new AppError('JUNIPER_ERR_CONFIG', `Cannot write the vault key file ${file} (${errorCode(cause)}).`, { cause });
  }
  closeSync(fd);
  syncDirectory(path.dirname(file));
  return true;
}

function checkPrivate(file: string): void {
  const stat = statSync(file);
  if (!stat.isFile()) {
    throw new AppError('JUNIPER_ERR_CONFIG', `The vault key path ${file} is not a regular file.`);
  }
  // Windows has no POSIX mode bits; Node reports 0o666 there, which says nothing about access.
  if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0) {
    const mode = (stat.mode & 0o777).toString(8).padStart(3, '0');
    throw new AppError(
      'JUNIPER_ERR_CONFIG',
      `The vault key file ${file} is readable or writable by other users (mode ${mode}); it must be private to ` +
        `Juniper's user. Run: chmod 600 ${file}`,
      { details: { file, mode } },
    );
  }
}

// Makes the new directory entry durable too; some platforms cannot open a directory, which only loses
// durability there, never correctness.
function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // See above.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function errorCode(e: unknown): string {
  if (typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string') return e.code;
  return e instanceof Error ? e.message : String(e);
}
