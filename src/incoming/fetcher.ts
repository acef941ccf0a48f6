// The fetch loop for one incoming server. The contract (DESIGN §7): a message is marked \Seen only after it is
// stored, nothing is lost if the process dies at any point, and one bad message never blocks a mailbox. So, per server:
//   1. take the server's lease (one worker at a time; renewed with every stored message);
//   2. open the folder; the first fetch, and the first after a UIDVALIDITY change (the old UIDs name nothing
//      any more), start at the oldest unseen message (duplicates are recognised by their dedupe key);
//   3. mark \Seen what an earlier run stored but could not mark (it died between commit and STORE);
//   4. list the UIDs above the cursor and fetch them in batches (by count and bytes), streamed and read ahead
//      (parsing starts as a message arrives); consecutive messages are stored in groups, each group with the
//      cursor moved past its last UID in ONE transaction; a group that fails is stored again one message per
//      transaction, so a failure stays the failing message's own; after the batch, \Seen is set on the
//      stored UIDs and recorded as done.
// Whatever fails for one message (parse, store, a database limit) quarantines it, with the error, in a
// transaction that moves the cursor the same way; a message over mail.incoming.max_message_bytes is
// quarantined from its header section, its body never downloaded. Only a failure of the connection or of the
// database as a whole stops the run, before the message, so the next run tries it again. A message whose FETCH
// itself breaks the run (a dropped connection, a crash, the process killed in it) cannot be caught: every FETCH
// is noted on the server before it is sent, and the run after one that never finished fetches what is left of it
// one message at a time, counting the runs in a row that fail on one alone; after FAILED_FETCH_SKIP_AFTER_RUNS
// that message is skipped with a placeholder in quarantine, as a UID the server lists but never returns is.
// UIDs, not \Seen, decide what is new: mail somebody already read in Outlook is still fetched.
import crypto from 'node:crypto';
import os from 'node:os';
import type { Kysely } from 'kysely';
import type { DB, IncomingServerRow } from '../db/schema.js';
import { AppError, isAppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { headerSection, oversizeKey, rawKey } from '../mailbox/dedupe.js';
import type { Ingest, IngestOutcome, IngestResult, QuarantineInput } from '../mailbox/ingest.js';
import type { ParseOutcome } from '../mailbox/parse.js';
import { sharedParsePool, type Parse } from '../mailbox/parse-pool.js';
import { knownParameters, normaliseParameter } from '../settings/parameter-rules.js';
import type { MailParameters } from '../settings/parameter-rules.js';
import type { Parameters } from '../settings/parameters.js';
import { connectServer, type ConnectDeps } from './connect.js';
import { FetchStopped, isFetchStopped } from './fetch-stopped.js';
import { batchesAfterFailure, cursorStart, newStartUid } from './fetch-plan.js';
import type { FolderStatus, MailboxReader } from './mailbox-reader.js';
import { isLeaseLost, type FetchState } from './fetch-state.js';
import { readAhead } from './read-ahead.js';
import { isDatabaseUnavailable } from './store-failure.js';
import { countFetchFailure, countFetchRun } from '../metrics/fetch-metrics.js';

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
  /** Messages stored per transaction (with one cursor move); a failing group is stored again one by one. */
  groupSize: number;
  leaseMs: number;
  onProgress?: (p: FetchProgress) => void;
  /**
   * Stops the run at once (FetchStopped): the IMAP step in progress ends with its connection closed, the messages
   * that arrived whole are stored (marked \Seen by the next run), and the run resolves with its counts, recording
   * nothing on the server: its lastError and interval stand, so it is due again at once.
   */
  signal?: AbortSignal;
}

// Batches of 200 stored in groups of 100: a commit and a group's statements cost about as much for 100 messages
// as for 25 (storing fell from 80–150 to 45–60 µs a message on SQLite, docs/benchmarks.md), and a batch is one
// FETCH, one STORE \Seen and one cursor write. A kill leaves at most one batch stored but not yet \Seen.
export const defaultFetchOptions: FetchOptions = { batchSize: 200, batchBytes: 50 * 1024 * 1024, groupSize: 100, leaseMs: 5 * 60_000 };

/** A run's options: a batch size given without a group size stores groups of half a batch, as the default does. */
export function fetchOptions(base: Partial<FetchOptions>, options: Partial<FetchOptions>): FetchOptions {
  const batchSize = options.batchSize ?? base.batchSize ?? defaultFetchOptions.batchSize;
  const groupSize = options.groupSize ?? Math.max(1, Math.ceil(batchSize / 2));
  return { ...defaultFetchOptions, ...base, ...options, batchSize, groupSize };
}

export interface FetcherDeps extends ConnectDeps {
  db: Kysely<DB>;
  servers: FetchState;
  ingest: Ingest;
  parameters: Parameters;
  log: Logger;
  owner?: string;
  now?: () => number;
  /** The lease when a run's options set none (default defaultFetchOptions.leaseMs). */
  leaseMs?: number;
  /** Messages per FETCH when a run's options set none (JUNIPER_FETCH_BATCH_SIZE; default defaultFetchOptions.batchSize). */
  batchSize?: number;
  /** How messages are parsed (default: the process's worker pool, sharedParsePool). */
  parse?: Parse;
}

export const emptyCounts = (): FetchCounts => ({ fetched: 0, stored: 0, duplicates: 0, quarantined: 0 });

/** The counts as one line, for the CLI and a job's messages. */
export const countsSummary = (c: FetchCounts) => `fetched ${c.fetched}, stored ${c.stored}, duplicates ${c.duplicates}, quarantined ${c.quarantined}`;

const COUNTER: Record<IngestOutcome, keyof FetchCounts> = { stored: 'stored', duplicate: 'duplicates', quarantined: 'quarantined' };

const SIZE_CAP_KEY = 'mail.incoming.max_message_bytes';
/** The most of an oversize message's header section that is downloaded and kept. */
export const OVERSIZE_HEADER_BYTES = 1024 * 1024;

/**
 * Runs in a row that stop before the same listed-but-never-returned UID before it is skipped: a placeholder
 * is quarantined in its place and the mail after it flows again. Once could be a message expunged between
 * the listing and the FETCH (the next listing no longer has it); three times in a row is the server's fault.
 */
export const UNRETURNED_SKIP_AFTER_RUNS = 3;

/**
 * Runs in a row that fail with the same message fetched alone (an error, a dropped connection, the process
 * dying in the FETCH) before it is skipped with a placeholder in quarantine. A FETCH of several that fails
 * accuses none of them: the next run fetches them one at a time, so only a message that fails by itself counts.
 * Three as for unreturned: once or twice can be the network or a restart; three times alone is the message.
 */
export const FAILED_FETCH_SKIP_AFTER_RUNS = 3;

const mb = (bytes: number) => `${(bytes / (1024 * 1024)).toFixed(1)} MB`;

/** The size cap in bytes; a stored value that no longer fits its rule counts as unset. */
export async function incomingSizeCap(parameters: Parameters): Promise<number> {
  const fallback = Number(knownParameters[SIZE_CAP_KEY].defaultValue);
  const stored = await parameters.value(SIZE_CAP_KEY);
  if (stored === undefined) return fallback;
  try {
    return Number(normaliseParameter(SIZE_CAP_KEY, stored));
  } catch {
    return fallback;
  }
}

export function oversizeReason(size: number, cap: number): string {
  return `This message is ${size} bytes (${mb(size)}), over the incoming size cap of ${cap} bytes (${mb(cap)}, system parameter ${SIZE_CAP_KEY}): only its header section was downloaded and is kept here. The whole message stays in the mailbox on the server; raise ${SIZE_CAP_KEY} to fetch messages this large from now on.`;
}

function unreturnedReason(uid: number): string {
  return `The server listed message UID ${uid} but did not return it in ${UNRETURNED_SKIP_AFTER_RUNS} fetches in a row, so Juniper skipped it to let the mail after it through: this is a placeholder, with the message's header section when the server gave that. The message stays in the mailbox on the server; open it in another mail client (it may be damaged there), and forward or move it if it matters.`;
}

function failedFetchReason(uid: number): string {
  return `Fetching message UID ${uid} failed ${FAILED_FETCH_SKIP_AFTER_RUNS} runs in a row with it fetched alone (an error, a dropped connection or the fetching process ending while it came), so Juniper skipped it to let the mail after it through: this is a placeholder, with the message's header section when the server gave that. The message stays in the mailbox on the server; open it in another mail client (it may be damaged or too large there), and forward or move it if it matters.`;
}

/** lastError while message `uid` fails alone: which message, how many runs so far, what happens next. */
function failingAloneError(serverName: string, uid: number, runs: number, cause?: string, nothingBehind = false): string {
  const next = runs >= FAILED_FETCH_SKIP_AFTER_RUNS
    ? nothingBehind
      ? 'no mail waits behind it yet: the first fetch that finds a later message skips it, keeping a placeholder in quarantine'
      : 'the next fetch skips it, keeping a placeholder in quarantine'
    : `Juniper tries it again at the next fetch and skips it (keeping a placeholder in quarantine) after ${FAILED_FETCH_SKIP_AFTER_RUNS} runs in a row`;
  return `Fetching "${serverName}" failed at message UID ${uid}, fetched alone, in ${runs} run${runs === 1 ? '' : 's'} in a row${cause ? ` (${cause})` : ' (the run ended without recording why: the connection or the process ended while it came)'}, so the messages after it wait; ${next}. The message stays in the mailbox on the server; to release the mail sooner, open it in another mail client and move or delete it.`;
}

/** What a run that drained the folder records on the server: healthy, stopped before a UID, or past a skipped one. */
function drainOutcome(serverName: string, r: { stoppedBefore?: number; skipped?: { uid: number; duplicate: boolean }; skippedFailing?: { uid: number; duplicate: boolean }; stillFailing?: { uid: number; runs: number; nothingBehind?: boolean } }): { ok: true } | { ok: false; error: string } {
  if (r.stillFailing !== undefined) return { ok: false, error: failingAloneError(serverName, r.stillFailing.uid, r.stillFailing.runs, undefined, r.stillFailing.nothingBehind) };
  if (r.stoppedBefore !== undefined) {
    return { ok: false, error: `Fetching "${serverName}" stopped before message UID ${r.stoppedBefore}: the server listed it but did not return it, so the messages after it wait. Juniper tries again at the next fetch and skips it (keeping a placeholder in quarantine) after ${UNRETURNED_SKIP_AFTER_RUNS} runs in a row; to release the mail sooner, open the message in another mail client (it may be damaged on the server) and move or delete it.` };
  }
  if (r.skipped !== undefined) {
    const kept = r.skipped.duplicate ? 'A message with the same Message-ID is already stored' : 'A placeholder is in quarantine';
    return { ok: false, error: `Fetching "${serverName}" skipped message UID ${r.skipped.uid}: the server listed it but did not return it in ${UNRETURNED_SKIP_AFTER_RUNS} runs in a row. ${kept}, the message stays on the server, and the next fetch goes on with the messages after it.` };
  }
  if (r.skippedFailing !== undefined) {
    const kept = r.skippedFailing.duplicate ? 'A message with the same Message-ID is already stored' : 'A placeholder is in quarantine';
    return { ok: false, error: `Fetching "${serverName}" skipped message UID ${r.skippedFailing.uid}: fetching it alone failed ${FAILED_FETCH_SKIP_AFTER_RUNS} runs in a row. ${kept}, the message stays on the server, and the mail after it was fetched.` };
  }
  return { ok: true };
}

const failureText = (err: unknown) => (err instanceof Error ? err.message : String(err)) || 'unknown error';

export class IncomingFetcher {
  readonly owner: string;
  private readonly now: () => number;
  private readonly parse: Parse;
  private readonly startParsers: () => void;

  constructor(private readonly deps: FetcherDeps) {
    this.owner = deps.owner ?? `${os.hostname()}:${process.pid}:${crypto.randomBytes(3).toString('hex')}`;
    this.now = deps.now ?? Date.now;
    // Looked up per message, not once: setSharedParseWorkers (a second app in one process) replaces the pool,
    // and a fetcher holding the old, closed one would quietly parse on the main thread.
    this.parse = deps.parse ?? ((...args) => sharedParsePool().parse(...args));
    this.startParsers = deps.parse ? () => undefined : () => sharedParsePool().start();
  }

  /**
   * Fetches one server now. Throws JUNIPER_ERR_CONFLICT when another worker holds it, or the failure (also
   * recorded on the server); a run stopped by `signal` resolves with what it stored. `keepLease`: the lease is
   * left held at the end, for the caller to release once it has recorded the run (a fetch job: its row must end
   * before its lease does, see src/jobs/fetch-jobs.ts).
   */
  async fetchServer(id: number, options: Partial<FetchOptions> & { keepLease?: boolean } = {}): Promise<FetchCounts> {
    const opts = fetchOptions({ ...(this.deps.leaseMs !== undefined ? { leaseMs: this.deps.leaseMs } : {}), ...(this.deps.batchSize !== undefined ? { batchSize: this.deps.batchSize } : {}) }, options);
    const { servers, log } = this.deps;
    const server = await servers.acquireLease(id, this.owner, opts.leaseMs, this.now());
    if (!server) {
      const current = await servers.get(id);
      const until = current.fetch_lease_until ? new Date(current.fetch_lease_until).toISOString() : 'soon';
      throw new AppError('JUNIPER_ERR_CONFLICT', `Incoming server "${current.name}" (id ${id}) is being fetched by another worker (lease until ${until}); try again after that.`);
    }
    const started = this.now();
    // The message fetched alone when the run fails, if one was: lastError then names it and its count.
    const inFlight: InFlight = {};
    const counts = emptyCounts();
    // The parse workers start while the connection is made.
    this.startParsers();
    try {
      const reader = await connectServer(server, { ...this.deps, maxMessageBytes: await incomingSizeCap(this.deps.parameters), ...(opts.signal ? { signal: opts.signal } : {}) });
      let stoppedBefore: number | undefined;
      let skipped: { uid: number; duplicate: boolean } | undefined;
      let skippedFailing: { uid: number; duplicate: boolean } | undefined;
      let stillFailing: { uid: number; runs: number; nothingBehind?: boolean } | undefined;
      try {
        ({ stoppedBefore, skipped, skippedFailing, stillFailing } = await this.drain(server, reader, await reader.open(server.folder), opts, inFlight, counts));
      } finally {
        await reader.close();
      }
      // A UID the server lists but does not return stops the runs before it, and is skipped after a few: neither
      // may look healthy.
      await servers.recordFetch(id, drainOutcome(server.name, { stoppedBefore, skipped, skippedFailing, stillFailing }), this.now());
      log.info({ op: 'incoming.fetch', server: id, ...counts, ms: this.now() - started }, `fetched ${server.name}`);
      countFetchRun(id, counts, this.now() - started);
      return counts;
    } catch (err) {
      if (isFetchStopped(err)) {
        // Stopped on purpose: no outcome is the server's (lastError, errorSince and the interval stand, so it is
        // due again at once); what it stored is kept, and the next run marks it \Seen and goes on after it.
        log.info({ op: 'incoming.fetch', server: id, ...counts, ms: this.now() - started }, `fetching ${server.name} stopped; the next fetch goes on after the ${counts.fetched} message${counts.fetched === 1 ? '' : 's'} it stored`);
        countFetchRun(id, counts, this.now() - started, 'stopped');
        return counts;
      }
      const message = isAppError(err) ? err.message : `Unexpected error: ${(err as Error).message}`;
      // lastError is read on lists of servers and in alerts, so it says which server as well as what to do.
      const { alone, batch } = inFlight;
      const error = alone
        ? failingAloneError(server.name, alone.uid, alone.runs, message)
        : `Fetching "${server.name}" failed: ${message}${batch ? `${/[.!?]$/.test(message) ? '' : '.'} The messages from UID ${batch.first} to ${batch.last} not stored yet are fetched one at a time by the next fetch, to find the one that fails.` : ''}`;
      await servers.recordFetch(id, { ok: false, error }, this.now());
      // The message only: library errors carry protocol internals (commands, responses) that have no place in a log.
      log.warn({ op: 'incoming.fetch', server: id, code: isAppError(err) ? err.code : undefined, ...(alone ? { uid: alone.uid, runs: alone.runs } : {}) }, `fetching ${server.name} failed: ${message}`);
      countFetchFailure(id, this.now() - started);
      throw err;
    } finally {
      if (!options.keepLease) await servers.releaseLease(id, this.owner);
    }
  }

  private async drain(server: IncomingServerRow, reader: MailboxReader, status: FolderStatus, opts: FetchOptions, inFlight: InFlight, counts: FetchCounts): Promise<{ counts: FetchCounts; stoppedBefore?: number; skipped?: { uid: number; duplicate: boolean }; skippedFailing?: { uid: number; duplicate: boolean }; stillFailing?: { uid: number; runs: number; nothingBehind?: boolean } }> {
    const { servers, db, log } = this.deps;
    let lastUid: number;
    let seenUid: number;
    const start = cursorStart({ uidvalidity: server.cursor_uidvalidity, lastUid: server.cursor_last_uid, seenUid: server.cursor_seen_uid }, status.uidValidity);
    if (start.kind === 'continue') {
      ({ lastUid, seenUid } = start);
    } else {
      lastUid = newStartUid(await reader.firstUnseen(), status.uidNext);
      // UIDs of another UIDVALIDITY (or a first run) say nothing about the one earlier runs stopped before.
      if (server.unreturned_uid !== null) await servers.clearUnreturned(server.id, this.owner);
      if (server.attempt_first_uid !== null) await servers.clearAttempt(server.id, this.owner);
      server = { ...server, attempt_first_uid: null, attempt_last_uid: null, attempt_failed_runs: 0 };
      if (start.kind === 'reset') {
        log.warn({ op: 'incoming.uidvalidity', server: server.id, was: server.cursor_uidvalidity, now: status.uidValidity, from: lastUid + 1 }, `UIDVALIDITY of ${server.name}/${server.folder} changed: fetching again from the oldest unseen message`);
      }
      seenUid = lastUid;
      await servers.setCursor(db, server.id, this.owner, { uidvalidity: status.uidValidity, lastUid, seenUid, leaseUntil: this.now() + opts.leaseMs });
    }

    const cap = await incomingSizeCap(this.deps.parameters);
    // Sizes up to this are not asked for one by one: a whole batch of such messages stays within its bytes.
    const exactAbove = Math.min(cap, Math.max(1, Math.floor(opts.batchBytes / opts.batchSize)));
    if (seenUid < lastUid) {
      const gap = (await reader.listAfter(seenUid, exactAbove)).filter((m) => m.uid <= lastUid).map((m) => m.uid);
      await reader.markSeen(gap);
      await servers.setSeenUid(server.id, this.owner, lastUid);
    }

    const pending = await reader.listAfter(lastUid, exactAbove);
    const sizes = new Map(pending.map((m) => [m.uid, m.size]));
    const params = await this.deps.parameters.snapshot();
    const progress = () => opts.onProgress?.({ serverId: server.id, serverName: server.name, total: pending.length, ...counts });
    progress();
    // A FETCH noted and never finished: the last run failed in it, maybe with its process (nothing else may
    // have recorded it). Its messages not stored yet are fetched one at a time to find the one that breaks it.
    const failed = server.attempt_first_uid !== null ? { first: server.attempt_first_uid, last: server.attempt_last_uid ?? server.attempt_first_uid, runs: server.attempt_failed_runs } : undefined;
    if (failed && pending.some((m) => m.uid <= failed.last)) {
      log.warn({ op: 'incoming.fetch', server: server.id, first: failed.first, last: failed.last, runs: failed.runs }, `the last fetch of ${server.name} did not finish its FETCH of UIDs ${failed.first}–${failed.last}: fetching those messages one at a time`);
    }
    // Whether this run noted a FETCH of its own (so the note it leaves is about a FETCH that finished).
    let noted = false;
    let skippedFailing: { uid: number; duplicate: boolean } | undefined;
    const batchCtx = (uid: number) => ({ server, uid, uidvalidity: status.uidValidity, leaseMs: opts.leaseMs });
    for (const batch of batchesAfterFailure(pending, failed?.last ?? null, opts.batchSize, opts.batchBytes, cap)) {
      // Stopped between steps: no new one starts (nor its note).
      if (opts.signal?.aborted) throw new FetchStopped();
      const done: number[] = [];
      const expected = batch.uids;
      const first = expected[0]!;
      const alone = failed !== undefined && expected.length === 1 && first <= failed.last;
      if (alone && first === failed.first && failed.runs >= FAILED_FETCH_SKIP_AFTER_RUNS) {
        // Skipped only while mail waits behind it, and only once the server gives another message: a server that
        // fails every FETCH after SELECT (throttled, read-only, shutting down) must not send good messages to
        // quarantine one after another. Its failures so far then count for nothing.
        const behind = pending.find((m) => m.uid > first)?.uid;
        if (behind === undefined) return { counts, ...(skippedFailing ? { skippedFailing } : {}), stillFailing: { uid: first, runs: failed.runs, nothingBehind: true } };
        try {
          for await (const h of reader.fetchHeaders([behind], OVERSIZE_HEADER_BYTES)) void h;
        } catch (err) {
          // A stop is no sign of the server's: the count stands.
          if (!isFetchStopped(err)) await servers.forgiveAttempt(server.id, this.owner);
          throw err;
        }
        skippedFailing = await this.skipFailed(reader, batchCtx(first), failed.runs, { sizes, counts, progress });
        noted = false;
        continue;
      }
      // Noted before the FETCH is sent, so a run that dies in it (with its process) is counted all the same.
      const dyingWords = (n: number) => failingAloneError(server.name, first, n);
      const note = await servers.noteAttempt(server.id, this.owner, { first, last: expected[expected.length - 1]!, alone, lastError: dyingWords }, this.now(), this.now() + opts.leaseMs);
      const { runs } = note;
      noted = true;
      inFlight.alone = alone ? { uid: first, runs } : undefined;
      inFlight.batch = alone ? undefined : { first, last: expected[expected.length - 1]! };
      let received = 0;
      let missing: number | undefined;
      let group: Fetched[] = [];
      const flush = async () => {
        const taken = group;
        group = [];
        const results = await this.storeGroup(taken, { server, uidvalidity: status.uidValidity, params, cap, leaseMs: opts.leaseMs });
        results.forEach((result, i) => {
          const uid = taken[i]!.uid;
          counts.fetched++;
          counts[COUNTER[result.outcome]]++;
          if (result.outcome === 'quarantined') log.warn({ op: 'incoming.quarantine', server: server.id, uid, message: result.messageId }, `message UID ${uid} quarantined: ${result.reason ?? 'it could not be parsed'}`);
          done.push(uid);
        });
        if (results.length) progress();
      };
      const source = batch.oversize ? this.headersOnly(reader, expected, sizes) : this.whole(reader, expected, cap);
      // Read ahead (and parse) while earlier messages are written, bounded like the batch itself.
      try {
        for await (const msg of readAhead(source, (m) => m.bytes.length, opts.groupSize * 2, opts.batchBytes)) {
          // The cursor may pass only stored messages: a UID the server listed but did not return (expunged
          // meanwhile, or a server fault) stops the run here; the next run lists the folder again.
          if (expected[received] !== msg.uid) {
            missing = expected[received];
            break;
          }
          received++;
          // A listed size below the cap does not prove the bytes are: the downloaded ones decide too.
          if (msg.headersOnly || msg.size > cap) {
            await flush();
            group = [msg];
            await flush();
          } else {
            group.push(msg);
            if (group.length >= opts.groupSize) await flush();
          }
          // No break on a stop here: the reader ends the FETCH itself (FetchStopped), and the read-ahead first
          // hands over the messages that had arrived whole, which are stored below.
        }
        // Stopped as the FETCH ended: what it gave is stored, and the rest of the run does not start.
        if (opts.signal?.aborted) throw new FetchStopped();
      } catch (err) {
        // The messages that arrived whole before the connection failed are stored (not marked: the next run does).
        // The FETCH's note stays: the next run fetches what is left of it one message at a time. A stop accuses
        // no message: its note is taken back, count and lastError as they were, and the next run goes on as if
        // this FETCH had never been sent.
        if (group.length) await flush();
        if (isFetchStopped(err)) await servers.withdrawAttempt(server.id, this.owner, note);
        throw err;
      }
      inFlight.alone = undefined;
      inFlight.batch = undefined;
      await flush();
      // What the note said in case this run died in the FETCH is not so: the FETCH finished (and what came is
      // stored). Left, it would blame a message that got through for the rest of the run.
      if (alone && runs > 0) await servers.withdrawNotedError(server.id, this.owner, dyingWords(runs));
      if (done.length) {
        await reader.markSeen(done);
        // A loop, not Math.max(...done): a spread of a large batch (JUNIPER_FETCH_BATCH_SIZE) overflows the stack.
        let highest = done[0]!;
        for (const uid of done) if (uid > highest) highest = uid;
        await servers.setSeenUid(server.id, this.owner, highest);
      }
      if (missing === undefined && received < expected.length) missing = expected[received];
      if (missing !== undefined) {
        // The FETCH finished (without the message): what follows is unreturned's, counted its own way.
        await servers.clearAttempt(server.id, this.owner);
        return { counts, ...(await this.unreturned(reader, { server, uid: missing, uidvalidity: status.uidValidity, leaseMs: opts.leaseMs }, { sizes, cap, params, counts, progress })), ...(skippedFailing ? { skippedFailing } : {}) };
      }
    }
    // Here the run went to the end (a stopped one ends with FetchStopped): past the UID the count was about, and
    // past the last FETCH noted, which finished, and any note an earlier run left.
    if (server.unreturned_uid !== null) await servers.clearUnreturned(server.id, this.owner);
    if (noted || failed) await servers.clearAttempt(server.id, this.owner);
    return { counts, ...(skippedFailing ? { skippedFailing } : {}) };
  }

  /**
   * A UID the server listed but did not return in the batch. Asked for alone first (a server may answer a set
   * out of order, or fail on a large one): if it comes, it is stored as usual. Otherwise the run stops before
   * it, and the third run in a row to do so skips it with a placeholder in quarantine.
   */
  private async unreturned(
    reader: MailboxReader,
    ctx: MessageContext,
    run: { sizes: ReadonlyMap<number, number>; cap: number; params: MailParameters; counts: FetchCounts; progress: () => void },
  ): Promise<{ stoppedBefore?: number; skipped?: { uid: number; duplicate: boolean } }> {
    const { servers, log } = this.deps;
    const { server, uid } = ctx;
    let alone: IngestResult | undefined;
    for await (const msg of this.whole(reader, [uid], run.cap)) {
      if (msg.uid === uid) [alone] = await this.storeGroup([msg], { server, uidvalidity: ctx.uidvalidity, params: run.params, cap: run.cap, leaseMs: ctx.leaseMs });
    }
    if (!alone) {
      const runs = await servers.noteUnreturned(server.id, this.owner, uid, this.now() + ctx.leaseMs);
      if (runs < UNRETURNED_SKIP_AFTER_RUNS) {
        log.warn({ op: 'incoming.fetch', server: server.id, uid, runs }, `the server did not return message UID ${uid} (${runs} of ${UNRETURNED_SKIP_AFTER_RUNS} runs in a row before it is skipped); stopping before it, the next fetch tries again`);
        return { stoppedBefore: uid };
      }
    }
    const result = alone ?? (await this.skipUnreturned(reader, ctx, run.sizes.get(uid)));
    await this.passed(reader, ctx, result, run.counts);
    await servers.clearUnreturned(server.id, this.owner);
    run.progress();
    if (alone) {
      log.info({ op: 'incoming.fetch', server: server.id, uid }, `message UID ${uid} came only when asked for alone; the next fetch goes on after it`);
      return {};
    }
    log.warn({ op: 'incoming.quarantine', server: server.id, uid, message: result.messageId, outcome: result.outcome }, `message UID ${uid} skipped after ${UNRETURNED_SKIP_AFTER_RUNS} runs in a row without it: ${result.outcome === 'duplicate' ? 'a message with its Message-ID is already stored' : 'a placeholder is in quarantine'}`);
    return { skipped: { uid, duplicate: result.outcome === 'duplicate' } };
  }

  /**
   * One message the run got past on its own (stored when asked for alone, or skipped with a placeholder): counted,
   * and marked like every stored or quarantined message, since its row is committed and the cursor is past it.
   */
  private async passed(reader: MailboxReader, ctx: MessageContext, result: IngestResult, counts: FetchCounts): Promise<void> {
    counts.fetched++;
    counts[COUNTER[result.outcome]]++;
    await reader.markSeen([ctx.uid]);
    await this.deps.servers.setSeenUid(ctx.server.id, this.owner, ctx.uid);
  }

  /**
   * Skips a message that failed the last runs fetched alone: a placeholder in quarantine with the cursor move,
   * as for one the server never returns (skipUnreturned). Its header section is asked for once: the FETCH is
   * noted first (one more run), so if that breaks the run too, the next one keeps the placeholder without it.
   */
  private async skipFailed(reader: MailboxReader, ctx: MessageContext, runs: number, run: { sizes: ReadonlyMap<number, number>; counts: FetchCounts; progress: () => void }): Promise<{ uid: number; duplicate: boolean }> {
    const { servers, log } = this.deps;
    const { server, uid } = ctx;
    const headers = runs === FAILED_FETCH_SKIP_AFTER_RUNS;
    const note = headers ? await servers.noteAttempt(server.id, this.owner, { first: uid, last: uid, alone: true }, this.now(), this.now() + ctx.leaseMs) : undefined;
    let result: IngestResult;
    try {
      result = await this.skipUnreturned(reader, ctx, run.sizes.get(uid), { error: failedFetchReason(uid), headers, key: 'failed-fetch' });
    } catch (err) {
      // Stopped in the header FETCH: the next run asks for it again, the note as it was.
      if (note && isFetchStopped(err)) await servers.withdrawAttempt(server.id, this.owner, note);
      throw err;
    }
    await this.passed(reader, ctx, result, run.counts);
    await servers.clearAttempt(server.id, this.owner);
    run.progress();
    log.warn({ op: 'incoming.quarantine', server: server.id, uid, message: result.messageId, outcome: result.outcome }, `message UID ${uid} skipped after ${FAILED_FETCH_SKIP_AFTER_RUNS} runs in a row that failed fetching it alone: ${result.outcome === 'duplicate' ? 'a message with its Message-ID is already stored' : 'a placeholder is in quarantine'}`);
    return { uid, duplicate: result.outcome === 'duplicate' };
  }

  /**
   * Quarantines a placeholder for a message the server lists but never returns, with the cursor move: its
   * header section when the server gives that much (a FETCH of the header alone), else an empty one, and the
   * reason with what to do. The message itself stays on the server.
   */
  private async skipUnreturned(reader: MailboxReader, ctx: MessageContext, listedSize: number | undefined, skip: { error: string; headers: boolean; key: string } = { error: unreturnedReason(ctx.uid), headers: true, key: 'unreturned' }): Promise<IngestResult> {
    const { error } = skip;
    let headers: Buffer | undefined;
    try {
      if (skip.headers) for await (const h of reader.fetchHeaders([ctx.uid], OVERSIZE_HEADER_BYTES)) if (h.uid === ctx.uid) headers = h.headers;
    } catch (err) {
      // Stopped, the run keeps no placeholder: the next one asks for the header again.
      if (isFetchStopped(err)) throw err;
      // A server that cannot give the message cannot always give its header either: the placeholder goes without.
      // The code only: library errors carry protocol text. A lost connection fails the STORE that follows.
      this.deps.log.warn({ op: 'incoming.fetch', server: ctx.server.id, uid: ctx.uid, code: (err as { code?: unknown }).code }, `the header section of message UID ${ctx.uid} could not be fetched either; the placeholder goes without it`);
    }
    if (headers && headers.length > 0) return this.quarantined(ctx, { raw: headers, size: listedSize ?? headers.length, error, oversize: true });
    // The cursor moves in the same transaction, so the key only has to be new: a mailbox changed under the same
    // server can bring the same UIDVALIDITY and UID again.
    const key = `${skip.key}:${ctx.uidvalidity}:${ctx.uid}:${crypto.randomBytes(6).toString('hex')}`;
    const input = { server: ctx.server, uid: ctx.uid, uidvalidity: ctx.uidvalidity, raw: Buffer.alloc(0), error, key, ...(listedSize !== undefined ? { size: listedSize } : {}) };
    return this.withCursor(ctx, (trx) => this.deps.ingest.quarantineMinimal(trx, input));
  }

  /**
   * Stores consecutive messages in one transaction that also moves the cursor to the last of them. When that
   * fails for any reason, they are stored one by one as before, so only a message that fails by itself is
   * quarantined and a database that is away stops the run before the first message it refuses.
   */
  private async storeGroup(group: Fetched[], run: { server: IncomingServerRow; uidvalidity: number; params: MailParameters; cap: number; leaseMs: number }): Promise<(IngestResult & { reason?: string })[]> {
    const { server, uidvalidity, params, cap, leaseMs } = run;
    const one = async (msg: Fetched) => {
      const ctx = { server, uid: msg.uid, uidvalidity, leaseMs };
      return msg.headersOnly || msg.size > cap
        ? this.quarantined(ctx, { raw: msg.headersOnly ? msg.bytes : headerSection(msg.bytes, OVERSIZE_HEADER_BYTES), size: msg.size, error: oversizeReason(msg.size, cap), oversize: true })
        : this.ingestOne(ctx, msg.bytes, params, await msg.parsed!);
    };
    if (group.length === 0) return [];
    if (group.length === 1) return [await one(group[0]!)];
    const parsed = await this.keepingLease(server.id, leaseMs, Promise.all(group.map((m) => m.parsed!)));
    try {
      const last = group[group.length - 1]!.uid;
      return await this.withCursor({ server, uid: last, uidvalidity, leaseMs }, async (trx) => {
        const results = await this.deps.ingest.storeMany(
          trx,
          group.map((m, i) => ({ server, uid: m.uid, uidvalidity, raw: m.bytes, parsed: parsed[i]!, params })),
        );
        return results.map((r, i) => {
          const p = parsed[i]!;
          return r.outcome === 'quarantined' && !p.ok ? { ...r, reason: p.error } : r;
        });
      });
    } catch (err) {
      if (isLeaseLost(err)) throw err;
      const results: (IngestResult & { reason?: string })[] = [];
      for (const msg of group) results.push(await one(msg));
      return results;
    }
  }

  private async *whole(reader: MailboxReader, uids: number[], cap: number): AsyncIterable<Fetched> {
    // Parsing starts as the message arrives, on a parse worker where there are any (a parse never rejects): it
    // overlaps the writes before it.
    for await (const m of reader.fetch(uids)) yield { uid: m.uid, bytes: m.source, size: m.source.length, headersOnly: false, parsed: m.source.length > cap ? undefined : this.parse(m.source) };
  }

  private async *headersOnly(reader: MailboxReader, uids: number[], sizes: ReadonlyMap<number, number>): AsyncIterable<Fetched> {
    for await (const h of reader.fetchHeaders(uids, OVERSIZE_HEADER_BYTES)) yield { uid: h.uid, bytes: h.headers, size: sizes.get(h.uid) ?? h.headers.length, headersOnly: true };
  }

  /** Parses and stores one message with the cursor; anything that fails for this message quarantines it. */
  private async ingestOne(ctx: MessageContext, raw: Buffer, params: MailParameters, parsed: ParseOutcome): Promise<IngestResult & { reason?: string }> {
    try {
      const r = await this.withCursor(ctx, (trx) => this.deps.ingest.store(trx, { server: ctx.server, uid: ctx.uid, uidvalidity: ctx.uidvalidity, raw, parsed, params }));
      return r.outcome === 'quarantined' && !parsed.ok ? { ...r, reason: parsed.error } : r;
    } catch (err) {
      if (isLeaseLost(err)) throw err;
      if (isDatabaseUnavailable(err)) {
        throw new AppError('JUNIPER_ERR_DATABASE', `The database failed while storing message UID ${ctx.uid} of incoming server "${ctx.server.name}" (${failureText(err)}); it was not marked read and nothing after it was fetched. The next fetch tries it again once the database is back.`, { cause: err });
      }
      const error = `Juniper could not store this message: ${failureText(err)}. It is kept here unchanged (download the original to read it) and the mailbox went on with the next message.`;
      return this.quarantined(ctx, { raw, error, oversize: false, ...(!parsed.ok && parsed.headers ? { headers: parsed.headers } : {}) });
    }
  }

  /**
   * Quarantines one message with its cursor move; if even that fails, a minimal row (error and truncated
   * headers, no blob). Only when the database refuses that too does the run stop, before this message.
   */
  private async quarantined(ctx: MessageContext, q: { raw: Buffer; error: string; size?: number; oversize: boolean; headers?: ParseOutcome }): Promise<IngestResult & { reason: string }> {
    const input: QuarantineInput = {
      server: ctx.server,
      uid: ctx.uid,
      uidvalidity: ctx.uidvalidity,
      raw: q.raw,
      error: q.error,
      key: q.oversize ? oversizeKey(q.raw, q.size ?? q.raw.length) : rawKey(q.raw),
      ...(q.size !== undefined ? { size: q.size } : {}),
      ...(q.headers ? { headers: q.headers } : {}),
    };
    try {
      return { ...(await this.withCursor(ctx, (trx) => this.deps.ingest.quarantine(trx, input))), reason: q.error };
    } catch (err) {
      if (isLeaseLost(err)) throw err;
      const error = `${q.error} Quarantine with the original failed too (${failureText(err)}): only the error and the first 64 KB of the header section are kept; the whole message stays in the mailbox on the server.`;
      try {
        return { ...(await this.withCursor(ctx, (trx) => this.deps.ingest.quarantineMinimal(trx, { ...input, error }))), reason: error };
      } catch (last) {
        if (isLeaseLost(last)) throw last;
        throw new AppError('JUNIPER_ERR_DATABASE', `Message UID ${ctx.uid} of incoming server "${ctx.server.name}" could be neither stored nor quarantined (${failureText(last)}); nothing after it was fetched. Check the database; the next fetch tries this message again.`, { cause: last });
      }
    }
  }

  /**
   * Awaits `work` while renewing the server's lease every third of it. Storing is what renews the lease, and a
   * group is stored once all its parses are in: a group holding several messages that each run the parse budget
   * out (20 s by default) would otherwise outlast the lease, lose the server to another worker, roll back, and
   * that worker would meet the same group. A renewal that finds the lease gone ends the wait with the lease-lost error.
   */
  private async keepingLease<T>(serverId: number, leaseMs: number, work: Promise<T>): Promise<T> {
    let lost: ((err: unknown) => void) | undefined;
    const losing = new Promise<never>((_, reject) => (lost = reject));
    losing.catch(() => undefined); // lost after the work ended: nobody waits for it any more
    const timer = setInterval(() => {
      this.deps.servers.renewLease(serverId, this.owner, this.now() + leaseMs).catch((err: unknown) => {
        if (isLeaseLost(err)) lost?.(err);
      });
    }, Math.max(1_000, Math.floor(leaseMs / 3)));
    timer.unref();
    try {
      return await Promise.race([work, losing]);
    } finally {
      clearInterval(timer);
    }
  }

  private async withCursor<R extends IngestResult | IngestResult[]>(ctx: MessageContext, write: (trx: Kysely<DB>) => Promise<R>): Promise<R> {
    const { db, servers } = this.deps;
    return db.transaction().execute(async (trx) => {
      const r = await write(trx);
      await servers.setCursor(trx, ctx.server.id, this.owner, { lastUid: ctx.uid, leaseUntil: this.now() + ctx.leaseMs });
      return r;
    });
  }
}

/** One message as the loop handles it: its bytes, or only its header section when it is over the cap. */
interface Fetched {
  uid: number;
  bytes: Buffer;
  /** The whole message's size (the IMAP size for a header-only fetch). */
  size: number;
  headersOnly: boolean;
  /** Started on arrival, for a whole message under the cap. */
  parsed?: Promise<ParseOutcome>;
}

/** What the run is fetching when it fails: a message alone (after an earlier run failed in its FETCH) and its count. */
interface InFlight {
  alone?: { uid: number; runs: number };
  batch?: { first: number; last: number };
}

interface MessageContext {
  server: IncomingServerRow;
  uid: number;
  uidvalidity: number;
  leaseMs: number;
}
