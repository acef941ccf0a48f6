// The fetch loop for one incoming server. The contract (DESIGN §7): a message is marked \Seen only after it is
// stored, and nothing is lost if the process dies at any point. So, per server:
//   1. take the server's lease (one worker at a time; renewed with every stored message);
//   2. open the folder; a new UIDVALIDITY means the old UIDs name nothing any more: start over (duplicates
//      are recognised by Message-ID or raw hash). The first fetch starts at the oldest unseen message;
//   3. mark \Seen what an earlier run stored but could not mark (it died between commit and STORE);
//   4. list the UIDs above the cursor and fetch them in batches (by count and bytes); each message is parsed,
//      then stored and the cursor moved past its UID in ONE transaction; after the batch, \Seen is set on
//      the stored UIDs and recorded as done.
// UIDs, not \Seen, decide what is new: mail somebody already read in Outlook is still fetched.
import crypto from 'node:crypto';
import os from 'node:os';
import type { Kysely } from 'kysely';
import type { DB, IncomingServer } from '../db/schema.js';
import { AppError, isAppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Ingest, IngestOutcome } from '../mailbox/ingest.js';
import { parseMessage } from '../mailbox/parse.js';
import type { Parameters } from '../settings/parameters.js';
import { connectServer, type ConnectDeps } from './connect.js';
import type { FolderStatus, MailboxReader } from './mailbox-reader.js';
import type { IncomingServers } from './servers.js';

export interface FetchCounts {
  fetched: number;
  stored: number;
  duplicates: number;
  quarantined: number;
}

export interface FetchProgress extends FetchCounts {
  serverId: number;
  serverName: string;
  /** Messages above the cursor when the run started. */
  total: number;
}

export interface FetchOptions {
  batchSize: number;
  /** A batch stops growing at this many bytes (one message always fits), so memory stays bounded. */
  batchBytes: number;
  leaseMs: number;
  onProgress?: (p: FetchProgress) => void;
  /** Checked between messages: the run stops after the current one, with everything so far kept and marked. */
  signal?: AbortSignal;
}

export const defaultFetchOptions: FetchOptions = { batchSize: 50, batchBytes: 50 * 1024 * 1024, leaseMs: 5 * 60_000 };

export interface FetcherDeps extends ConnectDeps {
  db: Kysely<DB>;
  servers: IncomingServers;
  ingest: Ingest;
  parameters: Parameters;
  log: Logger;
  owner?: string;
  now?: () => number;
  /** The lease when a run's options set none (default defaultFetchOptions.leaseMs). */
  leaseMs?: number;
}

export const emptyCounts = (): FetchCounts => ({ fetched: 0, stored: 0, duplicates: 0, quarantined: 0 });

const COUNTER: Record<IngestOutcome, keyof FetchCounts> = { stored: 'stored', duplicate: 'duplicates', quarantined: 'quarantined' };

/** Splits ascending UIDs into batches of at most `size` messages and about `bytes` bytes. */
export function batches(pending: readonly { uid: number; size: number }[], size: number, bytes: number): number[][] {
  const out: number[][] = [];
  let current: number[] = [];
  let currentBytes = 0;
  for (const m of pending) {
    if (current.length > 0 && (current.length >= size || currentBytes + m.size > bytes)) {
      out.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(m.uid);
    currentBytes += m.size;
  }
  if (current.length) out.push(current);
  return out;
}

export class IncomingFetcher {
  readonly owner: string;
  private readonly now: () => number;

  constructor(private readonly deps: FetcherDeps) {
    this.owner = deps.owner ?? `${os.hostname()}:${process.pid}:${crypto.randomBytes(3).toString('hex')}`;
    this.now = deps.now ?? Date.now;
  }

  /** Fetches one server now. Throws JUNIPER_ERR_CONFLICT when another worker holds it, or the failure (also recorded on the server). */
  async fetchServer(id: number, options: Partial<FetchOptions> = {}): Promise<FetchCounts> {
    const opts = { ...defaultFetchOptions, ...(this.deps.leaseMs !== undefined ? { leaseMs: this.deps.leaseMs } : {}), ...options };
    const { servers, log } = this.deps;
    const server = await servers.acquireLease(id, this.owner, opts.leaseMs, this.now());
    if (!server) {
      const current = await servers.get(id);
      const until = current.fetch_lease_until ? new Date(current.fetch_lease_until).toISOString() : 'soon';
      throw new AppError('JUNIPER_ERR_CONFLICT', `Incoming server "${current.name}" (id ${id}) is being fetched by another worker (lease until ${until}); try again after that.`);
    }
    const started = this.now();
    try {
      const reader = await connectServer(server, this.deps);
      let counts: FetchCounts;
      try {
        counts = await this.drain(server, reader, await reader.open(server.folder), opts);
      } finally {
        await reader.close();
      }
      await servers.recordFetch(id, { ok: true }, this.now());
      log.info({ op: 'incoming.fetch', server: id, ...counts, ms: this.now() - started }, `fetched ${server.name}`);
      return counts;
    } catch (err) {
      const message = isAppError(err) ? err.message : `Unexpected error: ${(err as Error).message}`;
      await servers.recordFetch(id, { ok: false, error: message }, this.now());
      // The message only: library errors carry protocol internals (commands, responses) that have no place in a log.
      log.warn({ op: 'incoming.fetch', server: id, code: isAppError(err) ? err.code : undefined }, `fetching ${server.name} failed: ${message}`);
      throw err;
    } finally {
      await servers.releaseLease(id, this.owner);
    }
  }

  private async drain(server: IncomingServer, reader: MailboxReader, status: FolderStatus, opts: FetchOptions): Promise<FetchCounts> {
    const { servers, db, log } = this.deps;
    const counts = emptyCounts();
    let lastUid: number;
    let seenUid: number;
    if (server.cursor_uidvalidity === status.uidValidity && server.cursor_last_uid !== null) {
      lastUid = server.cursor_last_uid;
      seenUid = Math.min(server.cursor_seen_uid ?? lastUid, lastUid);
    } else {
      if (server.cursor_uidvalidity !== null) {
        log.warn({ op: 'incoming.uidvalidity', server: server.id, was: server.cursor_uidvalidity, now: status.uidValidity }, `UIDVALIDITY of ${server.name}/${server.folder} changed: fetching the folder again`);
        lastUid = 0;
      } else {
        const firstUnseen = await reader.firstUnseen();
        lastUid = (firstUnseen ?? status.uidNext) - 1;
      }
      seenUid = lastUid;
      await servers.setCursor(db, server.id, this.owner, { uidvalidity: status.uidValidity, lastUid, seenUid, leaseUntil: this.now() + opts.leaseMs });
    }

    if (seenUid < lastUid) {
      const gap = (await reader.listAfter(seenUid)).filter((m) => m.uid <= lastUid).map((m) => m.uid);
      await reader.markSeen(gap);
      await servers.setSeenUid(server.id, this.owner, lastUid);
    }

    const pending = await reader.listAfter(lastUid);
    const params = await this.deps.parameters.snapshot();
    const progress = () => opts.onProgress?.({ serverId: server.id, serverName: server.name, total: pending.length, ...counts });
    progress();
    for (const batch of batches(pending, opts.batchSize, opts.batchBytes)) {
      if (opts.signal?.aborted) break;
      const done: number[] = [];
      const expected = [...batch].sort((a, b) => a - b);
      let missing: number | undefined;
      for await (const msg of reader.fetch(batch)) {
        // The cursor may pass only stored messages: a UID the server listed but did not return (expunged
        // meanwhile, or a server fault) stops the run here; the next run lists the folder again.
        if (expected[done.length] !== msg.uid) {
          missing = expected[done.length];
          break;
        }
        const parsed = await parseMessage(msg.source);
        const result = await db.transaction().execute(async (trx) => {
          const r = await this.deps.ingest.store(trx, { server, uid: msg.uid, uidvalidity: status.uidValidity, raw: msg.source, parsed, params });
          await servers.setCursor(trx, server.id, this.owner, { lastUid: msg.uid, leaseUntil: this.now() + opts.leaseMs });
          return r;
        });
        counts.fetched++;
        counts[COUNTER[result.outcome]]++;
        if (result.outcome === 'quarantined') log.warn({ op: 'incoming.quarantine', server: server.id, uid: msg.uid, message: result.messageId }, 'message quarantined: it could not be parsed');
        done.push(msg.uid);
        progress();
        if (opts.signal?.aborted) break;
      }
      if (done.length) {
        await reader.markSeen(done);
        await servers.setSeenUid(server.id, this.owner, Math.max(...done));
      }
      if (missing === undefined && done.length < expected.length && !opts.signal?.aborted) missing = expected[done.length];
      if (missing !== undefined) {
        log.warn({ op: 'incoming.fetch', server: server.id, uid: missing }, `the server did not return message UID ${missing}; stopping before it, the next fetch tries again`);
        break;
      }
    }
    return counts;
  }
}
