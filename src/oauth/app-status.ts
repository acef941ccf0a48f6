// An app-wide OAuth problem (client secret invalid or expired, app unknown to the tenant) concerns every
// Outlook server at once, so it is kept once, in the settings table, and shown on each server until a
// token request succeeds again or the admin changes the Client ID, Client Secret, cloud or tenant (the problem
// is stamped with the credentials it was seen with). It stops applying at that save, not only at the next
// successful token request: it is Microsoft's verdict on the old credentials, and showing "Microsoft refused the
// client secret" for a secret Microsoft has not seen would be false. The verdict on the new ones comes within
// seconds: the save releases the mails waiting for the problem (Settings' hook), and a refusal of their token
// request records the problem again, stamped with the new credentials.
import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.js';
import { sha256Hex } from '../vault/hmac.js';

const KEY = 'outlook.app_problem';
// What Microsoft judges the app by: a new tenant or cloud can fix an unknown app (AADSTS700016) or tenant (90002)
// as a new secret fixes AADSTS7000215 (the same fields as settings.ts's APP_IDENTITY_FIELDS).
const CREDENTIAL_KEYS = ['outlook.client_id', 'outlook.client_secret', 'outlook.cloud', 'outlook.tenant'];

export interface AppProblem {
  code: string | null;
  message: string;
  since: string;
}

interface Stored extends AppProblem {
  stamp: string;
}

export class OAuthAppStatus {
  constructor(private readonly db: Kysely<DB>) {}

  private async stamp(): Promise<string> {
    const rows = await this.db.selectFrom('settings').select(['key', 'value']).where('key', 'in', CREDENTIAL_KEYS).orderBy('key').execute();
    return sha256Hex(rows.map((r) => `${r.key}=${r.value}`).join('\n'));
  }

  private async stored(): Promise<Stored | null> {
    const row = await this.db.selectFrom('settings').select('value').where('key', '=', KEY).executeTakeFirst();
    return row ? (JSON.parse(row.value) as Stored) : null;
  }

  async get(): Promise<AppProblem | null> {
    const stored = await this.stored();
    if (!stored || stored.stamp !== (await this.stamp())) return null;
    return { code: stored.code, message: stored.message, since: stored.since };
  }

  async set(code: string | null, message: string): Promise<void> {
    const existing = await this.get();
    const value = JSON.stringify({ code, message, since: existing?.since ?? new Date().toISOString(), stamp: await this.stamp() } satisfies Stored);
    await this.db
      .insertInto('settings')
      .values({ key: KEY, value, updated_at: Date.now() })
      .onConflict((oc) => oc.column('key').doUpdateSet({ value, updated_at: Date.now() }))
      .execute();
  }

  async clear(): Promise<void> {
    await this.db.deleteFrom('settings').where('key', '=', KEY).execute();
  }
}
