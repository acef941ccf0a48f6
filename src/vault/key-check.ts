// Whether the configured vault keys fit the secrets the database holds, decided before anything uses the
// vault. A new key is generated only for a database that holds no secret yet: a missing key file next to
// stored secrets means the key was lost (a copied data directory, a restore without the key, a command run
// without JUNIPER_SECRET_KEY), and a fresh key would only bury the old secrets under a second key.
import { AppError } from '../lib/errors.js';
import { SECRET_KEY_ENV } from './keys.js';

export interface KeyCheckInput {
  /** Configured key ids, newest first; empty when no key was found and none was created yet. */
  readonly configured: readonly string[];
  /** How many stored secrets each key id encrypts (from the ciphertexts). */
  readonly storedByKey: Readonly<Record<string, number>>;
}

export interface KeyCheck {
  /** 'create': fresh install, generate the key file; 'refuse': no stored secret is readable; 'ok' otherwise. */
  readonly decision: 'ok' | 'create' | 'refuse';
  /** Stored key ids that are not configured, with the number of secrets under each. */
  readonly missing: readonly { keyId: string; count: number }[];
}

export function checkVaultKeys({ configured, storedByKey }: KeyCheckInput): KeyCheck {
  const known = new Set(configured);
  const stored = Object.entries(storedByKey).filter(([, n]) => n > 0);
  const missing = stored.filter(([kid]) => !known.has(kid)).map(([keyId, count]) => ({ keyId, count }));
  if (configured.length === 0) return { decision: stored.length === 0 ? 'create' : 'refuse', missing };
  // Some secrets under a dropped key (an old key removed before rotating) leave the rest usable: doctor and
  // `vault status` name them. Only when none at all is readable is the key surely the wrong one.
  const readable = stored.some(([kid]) => known.has(kid));
  return { decision: stored.length > 0 && !readable ? 'refuse' : 'ok', missing };
}

export interface KeySourceDescription {
  /** JUNIPER_SECRET_KEY was set (the key file is then not read). */
  readonly fromEnv: boolean;
  /** The key file's path (when not from the variable). */
  readonly file: string;
  readonly configured: readonly string[];
}

/** Where Juniper looked for keys and what it found: for the refusal and for doctor. */
export function describeKeySource(s: KeySourceDescription): string {
  if (s.fromEnv) return `${SECRET_KEY_ENV} (key id${s.configured.length > 1 ? 's' : ''} ${s.configured.join(', ')}; the data directory's vault.key is not read when it is set)`;
  return s.configured.length
    ? `${s.file} (key id ${s.configured.join(', ')}; ${SECRET_KEY_ENV} is not set)`
    : `${s.file} (no such file; ${SECRET_KEY_ENV} is not set)`;
}

export function missingKeysText(missing: KeyCheck['missing']): string {
  const n = missing.reduce((m, k) => m + k.count, 0);
  const ids = missing.map((k) => `${k.keyId} (${k.count} secret${k.count === 1 ? '' : 's'})`).join(', ');
  return `${n} stored secret${n === 1 ? ' is' : 's are'} encrypted with vault key id${missing.length === 1 ? '' : 's'} ${ids}, which ${missing.length === 1 ? 'is' : 'are'} not configured`;
}

/** What to do about a key that is not configured; the same advice from startup, doctor, status and rotate. */
export const MISSING_KEY_ADVICE =
  `Restore the key: put the data directory's vault.key back from a backup (mode 600, owned by Juniper's user), ` +
  `or set ${SECRET_KEY_ENV} exactly as the service gets it (with systemd LoadCredential, read the same credential file). ` +
  'If the key is lost for good, `juniper vault forget --key-id ID --yes` deletes the secrets under that key so they can be entered again.';

/** The startup refusal: nothing is created, nothing is written. */
export function refusalError(check: KeyCheck, source: KeySourceDescription): AppError {
  return new AppError(
    'JUNIPER_ERR_VAULT_KEY',
    `${missingKeysText(check.missing)}. Juniper looked in ${describeKeySource(source)} and did not create a new key. ${MISSING_KEY_ADVICE} ` +
      '`juniper doctor` and `juniper vault status` show which secrets are affected.',
    { details: { missingKeyIds: check.missing.map((k) => k.keyId) } },
  );
}
