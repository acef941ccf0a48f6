// The encrypted value the settings own, for key rotation: the Outlook client secret. It is stored as a JSON
// string in the settings row `outlook.client_secret`.
import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.js';
import type { SecretSource } from '../vault/rotation.js';
import { CLIENT_SECRET_CONTEXT } from './settings.js';

const ROW_KEY = 'outlook.client_secret';

export function settingsSecretSources(db: Kysely<DB>): SecretSource[] {
  return [
    {
      label: 'settings.outlook.client_secret',
      async list() {
        const row = await db.selectFrom('settings').select('value').where('key', '=', ROW_KEY).executeTakeFirst();
        const cipher = row ? (JSON.parse(row.value) as unknown) : null;
        return typeof cipher === 'string' ? [{ id: ROW_KEY, cipher, context: CLIENT_SECRET_CONTEXT, name: 'Outlook client secret (Settings → Outlook Credentials)' }] : [];
      },
      async replace(secret, to) {
        const r = await db
          .updateTable('settings')
          .set({ value: JSON.stringify(to), updated_at: Date.now() })
          .where('key', '=', ROW_KEY)
          .where('value', '=', JSON.stringify(secret.cipher))
          .executeTakeFirst();
        return Number(r.numUpdatedRows) > 0;
      },
      // Settings then say no client secret is set, and it is pasted again there.
      async forget(secret) {
        await db.deleteFrom('settings').where('key', '=', ROW_KEY).where('value', '=', JSON.stringify(secret.cipher)).execute();
      },
    },
  ];
}
