// Where fetching stands for each incoming server: the lease that keeps a server to one worker at a time, the
// UID cursor (moved in the transaction that stores the message) and the outcome of the last run. The server
// settings themselves are IncomingServers' (servers.ts); these columns are written only by the fetcher.
import { sql, type Kysely } from 'kysely';
import type { DB, IncomingServer, IncomingServerRow } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import type { HostGuard } from '../mail-servers/host-guard.js';
import type { IncomingServers } from './servers.js';

/** The error setCursor throws when another worker took the server: never a reason to quarantine a message. */
export function isLeaseLost(err: unknown): boolean {
  return err instanceof AppError && err.code === 'JUNIPER_ERR_CONFLICT' && err.details?.leaseLost === true;
}

function leaseLost(id: number): AppError {
  return new AppError('JUNIPER_ERR_CONFLICT', `Lost the fetch lease of incoming server ${id} to another worker; it continues from here.`, { details: { leaseLost: true } });
}

/** The columns a FETCH's note may change: withdrawAttempt puts them back as they were. */
type NoteColumns = Pick<IncomingServerRow, 'attempt_first_uid' | 'attempt_last_uid' | 'attempt_failed_runs' | 'last_error' | 'error_since'>;

/** A FETCH as noteAttempt noted it, with what the note replaced. */
export interface NotedAttempt {
  /** Runs in a row that fetched `first` alone, this one included (0 for a FETCH of several). */
  runs: number;
  first: number;
  /** The lastError the note wrote (a message fetched alone), if it wrote one. */
  lastError?: string;
  replaced: NoteColumns;
}

export class FetchState {
  constructor(
    private readonly db: Kysely<DB>,
    /** The settings' owner: the fetcher reads a server and its address policy through here. */
    private readonly servers: Pick<IncomingServers, 'get' | 'hostGuard'>,
  ) {}

  get hostGuard(): HostGuard {
    return this.servers.hostGuard;
  }

  /** The server row as it stands now (who holds it, until when). */
  get = (id: number): Promise<IncomingServer> => this.servers.get(id);

  /** Confirmed, active servers whose interval has passed and that no worker holds. */
  async due(now = Date.now()): Promise<IncomingServerRow[]> {
    return this.db
      .selectFrom('incoming_servers')
      .selectAll()
      .where('state', '=', 'confirmed')
      .where('active', '=', 1)
      .where('archived_at', 'is', null)
      .where((eb) => eb.or([eb('last_fetch_at', 'is', null), eb(sql<number>`last_fetch_at + interval_minutes * 60000`, '<=', now)]))
      .where((eb) => eb.or([eb('fetch_lease_until', 'is', null), eb('fetch_lease_until', '<', now)]))
      .orderBy('priority')
      .orderBy('id')
      .execute();
  }

  /**
   * Takes the server for `owner` until now + leaseMs, if nobody else holds it: one conditional UPDATE, so
   * two workers never both win. Returns the row, or undefined when another worker has it.
   */
  async acquireLease(id: number, owner: string, leaseMs: number, now = Date.now()): Promise<IncomingServerRow | undefined> {
    return this.db
      .updateTable('incoming_servers')
      .set({ fetch_lease_owner: owner, fetch_lease_until: now + leaseMs })
      .where('id', '=', id)
      .where((eb) => eb.or([eb('fetch_lease_until', 'is', null), eb('fetch_lease_until', '<', now), eb('fetch_lease_owner', '=', owner)]))
      .returningAll()
      .executeTakeFirst();
  }

  async releaseLease(id: number, owner: string): Promise<void> {
    await this.db.updateTable('incoming_servers').set({ fetch_lease_owner: null, fetch_lease_until: null }).where('id', '=', id).where('fetch_lease_owner', '=', owner).execute();
  }

  /**
   * Moves the cursor, on `db` (the transaction that stored the message, so both happen or neither), and only
   * for the lease holder: a worker that lost its lease must not move a cursor another one now owns.
   */
  async setCursor(db: Kysely<DB>, id: number, owner: string, cursor: { uidvalidity?: number; lastUid: number; seenUid?: number; leaseUntil: number }): Promise<void> {
    const r = await db
      .updateTable('incoming_servers')
      .set({
        cursor_last_uid: cursor.lastUid,
        // Every stored message renews the lease: a long batch on a slow server keeps its worker.
        fetch_lease_until: cursor.leaseUntil,
        ...(cursor.uidvalidity !== undefined ? { cursor_uidvalidity: cursor.uidvalidity } : {}),
        ...(cursor.seenUid !== undefined ? { cursor_seen_uid: cursor.seenUid } : {}),
      })
      .where('id', '=', id)
      .where('fetch_lease_owner', '=', owner)
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1) throw leaseLost(id);
  }

  /**
   * Renews the lease without moving anything, for the lease holder only: a run waiting on its messages' parses
   * (each may take up to the parse budget) must not lose the server to another worker before it stores them.
   */
  async renewLease(id: number, owner: string, leaseUntil: number): Promise<void> {
    const r = await this.db.updateTable('incoming_servers').set({ fetch_lease_until: leaseUntil }).where('id', '=', id).where('fetch_lease_owner', '=', owner).executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1) throw leaseLost(id);
  }

  async setSeenUid(id: number, owner: string, seenUid: number): Promise<void> {
    await this.db.updateTable('incoming_servers').set({ cursor_seen_uid: seenUid }).where('id', '=', id).where('fetch_lease_owner', '=', owner).execute();
  }

  /**
   * Counts a run that stopped before `uid` (listed, not returned): one more when the last runs stopped there
   * too, else the first. Returns the count. Only the lease holder counts, and it renews the lease as a stored
   * message does (what follows may wait on the server); a worker that lost it gets the lease-lost error.
   */
  async noteUnreturned(id: number, owner: string, uid: number, leaseUntil: number): Promise<number> {
    const row = await this.db
      .updateTable('incoming_servers')
      .set({ unreturned_runs: sql<number>`case when unreturned_uid = ${uid} then unreturned_runs + 1 else 1 end`, unreturned_uid: uid, fetch_lease_until: leaseUntil })
      .where('id', '=', id)
      .where('fetch_lease_owner', '=', owner)
      .returning('unreturned_runs')
      .executeTakeFirst();
    if (!row) throw leaseLost(id);
    return Number(row.unreturned_runs);
  }

  /** Forgets the count (the lease holder only): a run went past the UID, skipped it, or the folder's UIDs changed meaning. */
  async clearUnreturned(id: number, owner: string): Promise<void> {
    await this.db.updateTable('incoming_servers').set({ unreturned_uid: null, unreturned_runs: 0 }).where('id', '=', id).where('fetch_lease_owner', '=', owner).where('unreturned_uid', 'is not', null).execute();
  }

  /**
   * Notes a FETCH before it is sent, so a run that dies in it (with its process) is known to the next one:
   * its first and last UID, and for a message fetched alone, one more run in a row that tried it (the count
   * starts again at 1 for another UID; a FETCH of several counts 0, it accuses none of them). `lastError`, for
   * one fetched alone, says what the count means should this run never record its outcome. Only the lease
   * holder notes (renewing the lease as a stored message does); another worker gets the lease-lost error.
   */
  async noteAttempt(id: number, owner: string, attempt: { first: number; last: number; alone: boolean; lastError?: (runs: number) => string }, now: number, leaseUntil: number): Promise<NotedAttempt> {
    // Read first (only the lease holder writes these columns): a run stopped in the FETCH puts them back.
    const replaced: NoteColumns = await this.db
      .selectFrom('incoming_servers')
      .select(['attempt_first_uid', 'attempt_last_uid', 'attempt_failed_runs', 'last_error', 'error_since'])
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    const runs = attempt.alone ? sql<number>`case when attempt_first_uid = ${attempt.first} then attempt_failed_runs + 1 else 1 end` : sql<number>`0`;
    const row = await this.db
      .updateTable('incoming_servers')
      .set({ attempt_first_uid: attempt.first, attempt_last_uid: sql<number>`case when attempt_last_uid > ${attempt.last} then attempt_last_uid else ${attempt.last} end`, attempt_failed_runs: runs, fetch_lease_until: leaseUntil })
      .where('id', '=', id)
      .where('fetch_lease_owner', '=', owner)
      .returning('attempt_failed_runs')
      .executeTakeFirst();
    if (!row) throw leaseLost(id);
    const n = Number(row.attempt_failed_runs);
    const noted: NotedAttempt = { runs: n, first: attempt.first, replaced };
    if (attempt.lastError && n > 0) {
      noted.lastError = attempt.lastError(n);
      await this.db.updateTable('incoming_servers').set({ last_error: noted.lastError, error_since: sql<number>`coalesce(error_since, ${now})` }).where('id', '=', id).where('fetch_lease_owner', '=', owner).execute();
    }
    return noted;
  }

  /**
   * Takes a FETCH's note back (the lease holder only): the run was stopped in it on purpose (a shutdown), which
   * says nothing about the server or the message. The note's columns, and the lastError and errorSince it wrote,
   * are put back as they were before it, unless something else has written them since.
   */
  async withdrawAttempt(id: number, owner: string, noted: NotedAttempt): Promise<void> {
    const { last_error, error_since, ...attempt } = noted.replaced;
    const held = this.db.updateTable('incoming_servers').where('id', '=', id).where('fetch_lease_owner', '=', owner);
    await held.set(attempt).where('attempt_first_uid', '=', noted.first).execute();
    if (noted.lastError !== undefined) await held.set({ last_error, error_since }).where('last_error', '=', noted.lastError).execute();
  }

  /**
   * Clears `lastError` when it is still the text noteAttempt wrote for a run dying in its FETCH (the lease
   * holder only): that FETCH finished. Anything written since (another message's note, a failure) stays.
   */
  async withdrawNotedError(id: number, owner: string, text: string): Promise<void> {
    // error_since stays: a failure later in the run keeps the time the server's run of failures began.
    await this.db.updateTable('incoming_servers').set({ last_error: null }).where('id', '=', id).where('fetch_lease_owner', '=', owner).where('last_error', '=', text).execute();
  }

  /**
   * The failures counted so far were the server's, not the message's (another message could not be fetched
   * either): the count starts again, the noted messages are still fetched one at a time (the lease holder only).
   */
  async forgiveAttempt(id: number, owner: string): Promise<void> {
    await this.db.updateTable('incoming_servers').set({ attempt_failed_runs: 0 }).where('id', '=', id).where('fetch_lease_owner', '=', owner).execute();
  }

  /** Forgets the noted FETCH (the lease holder only): it finished, the run got past it, or the folder's UIDs changed meaning. */
  async clearAttempt(id: number, owner: string): Promise<void> {
    await this.db.updateTable('incoming_servers').set({ attempt_first_uid: null, attempt_last_uid: null, attempt_failed_runs: 0 }).where('id', '=', id).where('fetch_lease_owner', '=', owner).where('attempt_first_uid', 'is not', null).execute();
  }

  /** The outcome of a fetch attempt: the interval counts from here; a failure keeps the time its run of failures began. */
  async recordFetch(id: number, outcome: { ok: true } | { ok: false; error: string }, now = Date.now()): Promise<void> {
    await this.db
      .updateTable('incoming_servers')
      .set(
        outcome.ok
          ? { last_fetch_at: now, last_error: null, error_since: null }
          : { last_fetch_at: now, last_error: outcome.error, error_since: sql<number>`coalesce(error_since, ${now})` },
      )
      .where('id', '=', id)
      .execute();
  }
}
