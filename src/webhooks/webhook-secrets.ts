// The webhooks' signing secrets, for key rotation (`juniper vault status` / `vault rotate`).
import type { Kysely } from 'kysely';
import { columnSecretSource } from '../db/secret-column.js';
import type { DB } from '../db/schema.js';
import type { SecretSource } from '../vault/rotation.js';
import { secretContext } from './webhooks.js';

export function webhookSecretSources(db: Kysely<DB>): SecretSource[] {
  // A webhook cannot exist without its signing secret, and its receiver knows only the old one: forgetting
  // the secret deletes the webhook, to be created again (with a new secret for the receiver).
  return [
    {
      ...columnSecretSource(db, 'webhooks', 'secret_enc', (id) => secretContext(Number(id)), { nameOf: (id) => `signing secret of webhook id ${id}`, forget: 'delete-row' }),
      // Its deliveries go with it (ON DELETE CASCADE): pending events are never sent, the history is gone.
      async forgetsAlso(secret) {
        const row = await db.selectFrom('webhook_deliveries').select((eb) => eb.fn.countAll<number | string>().as('n')).where('webhook_id', '=', Number(secret.id)).executeTakeFirst();
        const n = Number(row?.n ?? 0);
        return `webhook id ${secret.id} and its ${n} deliver${n === 1 ? 'y' : 'ies'}`;
      },
    },
  ];
}
