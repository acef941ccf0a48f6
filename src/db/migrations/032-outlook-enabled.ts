// Whether Microsoft Outlook is installed (Apps) is the setting outlook.enabled. Databases from before Apps
// existed have no such row, and the settings model used to count one holding an Outlook Client ID as installed
// (its Connect kept working). That guess is written down here, once: such a database gets outlook.enabled =
// true, every other keeps none, and a missing row now simply means not installed (src/settings/settings.ts).
// The same statement on both databases; a database that already has the row (installed or uninstalled in
// Apps) keeps it as it is.
import { sql, type Kysely } from 'kysely';
import type { MigrationContext } from './helpers.js';

export function outlookEnabled(_ctx: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      // A JSON null Client ID is as good as none: the model read it as "not set".
      await sql`
        insert into settings (key, value, updated_at)
        select 'outlook.enabled', 'true', cast(${Date.now()} as bigint) from settings
        where key = 'outlook.client_id' and value <> 'null'
          and not exists (select 1 from settings where key = 'outlook.enabled')`.execute(db);
    },
  };
}
