// Who changed which setting, parameter, server or user. Details name what changed, never secret values:
// callers pass field names for secrets (e.g. { changed: ['clientSecret'] }).
import type { Kysely } from 'kysely';
import type { AuditEntry, DB } from '../db/schema.js';

export interface Actor {
  userId: number | null;
  /** A login, or `cli` for the command line, or `setup` for the first-start setup link. */
  label: string;
}

export const cliActor: Actor = { userId: null, label: 'cli' };

export class AuditLog {
  constructor(private readonly db: Kysely<DB>) {}

  /**
   * Pass the transaction that makes the change as `db`: the row then commits or rolls back with what it
   * describes, so the log never claims a change that did not happen, nor misses one that did.
   */
  async record(actor: Actor, action: string, target: string, details?: Record<string, unknown>, db: Kysely<DB> = this.db): Promise<void> {
    await db
      .insertInto('audit_log')
      .values({
        at: Date.now(),
        actor_user_id: actor.userId,
        actor: actor.label,
        action,
        target,
        details: details ? JSON.stringify(details) : null,
      })
      .execute();
  }

  async recent(limit = 100): Promise<AuditEntry[]> {
    return this.db.selectFrom('audit_log').selectAll().orderBy('id', 'desc').limit(limit).execute();
  }
}
