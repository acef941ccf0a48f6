// The vault: the one place that holds key material. Everything else gets encrypt/decrypt/hmac functions
// and key ids; the keys live in closures, so logging or serialising a Vault shows no secret.
import { deriveHmacKey, hmac } from './hmac.js';
import { loadVaultKeys } from './keys.js';
import { createSecretBox } from './secret-box.js';

export interface Vault {
  /** AES-256-GCM under the current key; pass a context such as 'outgoing_servers.password:12'. */
  encrypt(plain: string, context?: string): string;
  /** Throws AppError JUNIPER_ERR_VAULT_KEY when the value cannot be decrypted. */
  decrypt(cipher: string, context?: string): string;
  /** The value under the current key; unchanged (after checking it) when it already is. */
  reencrypt(cipher: string, context?: string): string;
  /** Hex HMAC-SHA256 with a key derived from the current vault key; changes when the key rotates. */
  hmac(data: string): string;
  /** The configured key ids, the encrypting one first. */
  readonly keyIds: readonly string[];
  /** Where the keys came from, for logs: 'JUNIPER_SECRET_KEY' or the key file's path. */
  readonly source: string;
}

export interface OpenVaultOptions {
  readonly dataDir: string;
  /** From JUNIPER_SECRET_KEY, newest first; undefined or empty means `<dataDir>/vault.key`. */
  readonly secretKeys?: readonly string[] | undefined;
}

/** Loads the keys (creating `<dataDir>/vault.key` on first start unless keys are given) and opens the vault. */
export function openVault(options: OpenVaultOptions): Vault {
  const { keys, source } = loadVaultKeys(options);
  return createVault(keys, source);
}

/** A vault over keys already in hand, newest first (tests, or callers that loaded them with loadVaultKeys). */
export function createVault(keys: readonly Uint8Array[], source: string): Vault {
  const box = createSecretBox(keys); // throws on an empty list, so keys[0] exists below
  const hmacKey = deriveHmacKey(keys[0] as Uint8Array);
  return Object.freeze({
    encrypt: box.encrypt,
    decrypt: box.decrypt,
    reencrypt: box.reencrypt,
    hmac: (data: string) => hmac(hmacKey, data),
    keyIds: box.keyIds,
    source,
  });
}

export { ciphertextKeyId, createSecretBox, isVaultCiphertext, keyIdOf } from './secret-box.js';
export type { SecretBox } from './secret-box.js';
export { KEY_FILE_NAME, PASSPHRASE_MIN_LENGTH, PASSPHRASE_SALT, SECRET_KEY_ENV, loadVaultKeys, parseSecretKey } from './keys.js';
export type { LoadVaultKeysOptions, VaultKeys } from './keys.js';
export { HMAC_LABEL, deriveHmacKey, hmac, randomToken, sha256Hex, timingSafeEqualStr } from './hmac.js';
export {
  PASSWORD_MAX_LENGTH,
  PASSWORD_MIN_LENGTH,
  checkPasswordPolicy,
  dummyVerifyPassword,
  hashPassword,
  needsRehash,
  verifyPassword,
} from './password.js';
export type { SecretSource, StoredSecret } from './rotation.js';
export { checkVaultKeys, describeKeySource, MISSING_KEY_ADVICE, missingKeysText, refusalError } from './key-check.js';
export type { KeyCheck, KeySourceDescription } from './key-check.js';
