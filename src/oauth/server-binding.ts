// What of a server an Outlook sign-in is for: its mailbox, its auth method and where its tokens will be sent.
// Connect remembers it (oauth_states.server_binding) and the answer from Microsoft is stored only if none of it
// changed in the minutes between: the owner of a personal server could otherwise point it at a host of their
// own while an admin consents, and receive the admin's tokens there. A change after the connect forgets the
// tokens instead (MailServers.update), so either way a token only goes where it was given for.
import type { Kysely, Transaction } from 'kysely';
import type { DB } from '../db/schema.js';
import type { ServerKind } from './token-provider.js';
import { tableOf } from './connections.js';

export interface ServerBinding {
  auth: string;
  username: string | null;
  host: string;
  port: number;
  security: string;
  allowSelfSigned: boolean;
}

const LABELS: Record<keyof ServerBinding, string> = {
  auth: 'authentication',
  username: 'username (the mailbox)',
  host: 'host',
  port: 'port',
  security: 'security',
  allowSelfSigned: 'certificate check',
};

/** A server row's binding (both kinds of server have these columns). */
export function bindingOfRow(row: { auth: string; username: string | null; host: string; port: number; security: string; allow_self_signed: number }): ServerBinding {
  return { auth: row.auth, username: row.username, host: row.host, port: row.port, security: row.security, allowSelfSigned: row.allow_self_signed === 1 };
}

export function encodeBinding(b: ServerBinding): string {
  return JSON.stringify([b.auth, b.username, b.host.toLowerCase(), b.port, b.security, b.allowSelfSigned]);
}

function decodeBinding(s: string): ServerBinding | undefined {
  try {
    const [auth, username, host, port, security, allowSelfSigned] = JSON.parse(s) as [string, string | null, string, number, string, boolean];
    return { auth, username, host, port, security, allowSelfSigned };
  } catch {
    return undefined;
  }
}

/**
 * What changed between the sign-in's start (`stored`, as encodeBinding wrote it; null for a sign-in from before
 * the binding was kept) and now, in words for the message; [] when nothing did.
 */
export function bindingChanges(stored: string | null, now: ServerBinding): string[] {
  const then = stored === null ? undefined : decodeBinding(stored);
  if (!then) return ['settings (this sign-in was started before an upgrade)'];
  return bindingDiff(then, now);
}

/** What differs between two bindings, in words; host names compared without case (DNS ignores it). */
export function bindingDiff(a: ServerBinding, b: ServerBinding): string[] {
  const same = (k: keyof ServerBinding) => (k === 'host' ? a.host.toLowerCase() === b.host.toLowerCase() : a[k] === b[k]);
  return (Object.keys(LABELS) as (keyof ServerBinding)[]).filter((k) => !same(k)).map((k) => LABELS[k]);
}

/** Writes a server row unchanged: on PostgreSQL it is then locked until the transaction ends. */
export async function lockServerRow(trx: Kysely<DB> | Transaction<DB>, kind: ServerKind, serverId: number): Promise<void> {
  await trx.updateTable(tableOf(kind)).set((eb) => ({ updated_at: eb.ref('updated_at') })).where('id', '=', serverId).execute();
}

/**
 * The server's binding now. Inside a transaction, `lock` first writes the row unchanged, so that on PostgreSQL a
 * concurrent update waits for the tokens to be stored (and then forgets them) or is seen here; SQLite's single
 * writer orders the two anyway.
 */
export async function readBinding(db: Kysely<DB> | Transaction<DB>, kind: ServerKind, serverId: number, lock = false): Promise<ServerBinding | undefined> {
  if (lock) await lockServerRow(db, kind, serverId);
  const row = await db.selectFrom(tableOf(kind)).select(['auth', 'username', 'host', 'port', 'security', 'allow_self_signed']).where('id', '=', serverId).executeTakeFirst();
  return row && bindingOfRow(row);
}
