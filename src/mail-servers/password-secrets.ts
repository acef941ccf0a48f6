// The encrypted server passwords of both kinds, for key rotation.
import type { Kysely } from 'kysely';
import { columnSecretSource } from '../db/secret-column.js';
import type { DB } from '../db/schema.js';
import { incomingPasswordContext } from '../incoming/servers.js';
import { passwordContext } from '../outgoing/servers.js';
import type { SecretSource } from '../vault/rotation.js';

export function passwordSecretSources(db: Kysely<DB>): SecretSource[] {
  // A forgotten password leaves the server without one: the admin enters it again on the server.
  return [
    columnSecretSource(db, 'outgoing_servers', 'password_enc', (id) => passwordContext(Number(id)), { nameColumn: 'name', nameOf: (id, n) => `password of outgoing server "${n}" (id ${id})`, forget: 'clear' }),
    columnSecretSource(db, 'incoming_servers', 'password_enc', (id) => incomingPasswordContext(Number(id)), { nameColumn: 'name', nameOf: (id, n) => `password of incoming server "${n}" (id ${id})`, forget: 'clear' }),
  ];
}
