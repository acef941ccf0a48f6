// Every encrypted value the database holds, from each owner's SecretSource: what the startup key check,
// `juniper doctor` and `juniper vault` walk. The vault itself knows no tables.
import type { Kysely } from 'kysely';
import type { DB } from './db/schema.js';
import { passwordSecretSources } from './mail-servers/password-secrets.js';
import { oauthSecretSources } from './oauth/token-secrets.js';
import { settingsSecretSources } from './settings/settings-secrets.js';
import { webhookSecretSources } from './webhooks/webhook-secrets.js';
import { ciphertextKeyId, type SecretSource } from './vault/index.js';

export function storedSecretSources(db: Kysely<DB>): SecretSource[] {
  return [...settingsSecretSources(db), ...passwordSecretSources(db), ...oauthSecretSources(db), ...webhookSecretSources(db)];
}

/** How many stored secrets each key id encrypts; a value that is no vault ciphertext counts under '?'. */
export async function storedKeyIds(sources: readonly SecretSource[]): Promise<Record<string, number>> {
  const byKey: Record<string, number> = {};
  for (const source of sources) {
    for (const s of await source.list()) {
      const kid = keyIdOrUnknown(s.cipher, s.context);
      byKey[kid] = (byKey[kid] ?? 0) + 1;
    }
  }
  return byKey;
}

export function keyIdOrUnknown(cipher: string, context: string): string {
  try {
    return ciphertextKeyId(cipher, context);
  } catch {
    return '?';
  }
}
