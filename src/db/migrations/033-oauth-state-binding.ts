// A Microsoft sign-in remembers what of its server the tokens are for (the mailbox, the auth method and the
// endpoint, src/oauth/server-binding.ts) when Connect starts, and the answer is refused if any of it changed
// meanwhile: the server's owner could otherwise point it at their own host while an admin consents, and receive
// the admin's tokens. Sign-ins started before this have none and are refused: they are at most 10 minutes old.
import type { Kysely } from 'kysely';
import { addMissingColumns, type MigrationContext } from './helpers.js';

export function oauthStateBinding({ dialect }: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      await addMissingColumns(db, dialect, 'oauth_states', [
        { name: 'server_binding', add: (d) => d.schema.alterTable('oauth_states').addColumn('server_binding', 'text').execute() },
      ]);
    },
  };
}
