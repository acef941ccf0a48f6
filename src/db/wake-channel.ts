// Wakes the dispatchers of other processes sharing one PostgreSQL database (`juniper worker` next to
// `juniper serve`, several workers) when mail becomes due, instead of leaving it to their next poll (up to
// pollMs later). PostgreSQL LISTEN/NOTIFY on one channel: the process that made mail due sends NOTIFY after
// its write committed; every process with a dispatcher keeps one dedicated connection LISTENing (a LISTEN
// holds its session, so not a pool connection) and nudges its dispatcher. Polling stays the fallback and is
// what makes sending correct: a lost notification, or the listener being down, only costs up to a poll.
// SQLite: one process writes, the in-process wake-up (Outbox.onEnqueued) is all there is; nothing here runs.
import crypto from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type pg from 'pg';
import type { Database as DatabaseConfig } from '../config.js';
import type { Logger } from '../lib/logger.js';
import { describeDatabase } from './database.js';
import { pgModule } from './pg-module.js';
import type { DB } from './schema.js';

/** The one channel: its notifications carry no data (the dispatcher claims what is due, whatever it is). */
export const WAKE_CHANNEL = 'juniper_outbox';

/** What the listening connection calls itself in pg_stat_activity (operators, and the tests, find it so). */
export const LISTENER_APPLICATION_NAME = 'juniper wake listener';

export interface WakeChannel {
  /** Tells the other processes that mail became due (call after the write committed). Never waits, never throws. */
  notify(): void;
  /**
   * Calls `onWake` on each notification from another process (this process's own are skipped: its dispatcher
   * was nudged directly) and once after each reconnection (mail may have become due meanwhile). Returns stop.
   * `pollMs`: how often the caller polls anyway, for the warning when listening fails (the first caller's).
   */
  listen(onWake: () => void, options?: { pollMs?: number }): () => Promise<void>;
  /** Stops listening and waits for a notification being sent; the database may close afterwards. */
  close(): Promise<void>;
}

const noChannel: WakeChannel = { notify() {}, listen: () => async () => {}, close: async () => {} };

/** The pause before reconnecting after `failures` failed connections in a row: 1 s, doubling, at most 30 s. */
export function reconnectDelayMs(failures: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, failures - 1));
}

export function openWakeChannel(config: DatabaseConfig, db: Kysely<DB>, log: Logger): WakeChannel {
  if (config.kind !== 'postgres') return noChannel;
  // Marks this process's notifications, so that its own listener skips them.
  const token = crypto.randomBytes(4).toString('hex');
  // One NOTIFY in flight at most, and one more owed if mail became due while it ran (it may have committed
  // before that write did): a burst of enqueues costs two statements, not one each.
  let sending: Promise<void> | undefined;
  let owed = false;
  let closed = false;
  const send = (): Promise<void> =>
    sql`select pg_notify(${WAKE_CHANNEL}, ${token})`
      .execute(db)
      .then(
        () => undefined,
        (err: unknown) => log.debug({ err, op: 'wake.notify' }, 'could not notify the other workers; they find the mail at their next poll'),
      )
      .then(() => {
        sending = undefined;
        if (owed) {
          owed = false;
          sending = send();
        }
      });
  const listeners = new Set<() => void>();
  let listener: Listener | undefined;
  const wakeAll = () => {
    for (const l of listeners) {
      try {
        l();
      } catch {
        // A listener's failure is its own: polling finds the mail anyway.
      }
    }
  };
  return {
    notify() {
      if (closed) return;
      if (sending) owed = true;
      else sending = send();
    },
    listen(onWake, options = {}) {
      listeners.add(onWake);
      listener ??= new Listener(config.url, token, wakeAll, log, describeDatabase(config), options.pollMs);
      return async () => {
        listeners.delete(onWake);
        if (listeners.size === 0 && listener) {
          const l = listener;
          listener = undefined;
          await l.close();
        }
      };
    },
    async close() {
      closed = true;
      listeners.clear();
      await listener?.close();
      listener = undefined;
      // The notifications owed are sent before the pool closes (`juniper send` exits right after enqueueing).
      while (sending) await sending;
    },
  };
}

/**
 * The warning for the first failure of an outage: a listener that never listened could not start (say so,
 * rather than "lost"); one that did lost its connection. Both say that sending goes on by polling.
 */
export function listenFailureMessage(listenedBefore: boolean, database: string, pollMs: number | undefined): string {
  const polling = pollMs === undefined ? 'the dispatcher polls for due mail' : `the dispatcher polls for due mail every ${formatSeconds(pollMs)}`;
  return listenedBefore
    ? `lost the PostgreSQL connection that listens for due mail on ${database}; reconnecting, and meanwhile ${polling}`
    : `could not start listening for notifications of due mail on ${database}; sending still works: ${polling}; retrying`;
}

function formatSeconds(ms: number): string {
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
}

/** One dedicated connection LISTENing on the channel, connected again with backoff whenever it drops. */
class Listener {
  private client: pg.Client | undefined;
  private connecting: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  /** Whether a connection ever listened: a failure before that is a start that failed, not a connection lost. */
  private listened = false;
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly token: string,
    private readonly onWake: () => void,
    private readonly log: Logger,
    /** Which database, as describeDatabase says it (host, port, name; never the password). */
    private readonly database: string,
    private readonly pollMs: number | undefined,
  ) {
    this.connecting = this.connect();
  }

  private async connect(): Promise<void> {
    // keepAlive, first probe after 30 s idle (the OS default is two hours): a connection dropped without a FIN
    // (a failover, a NAT timeout) ends in an error within minutes instead of listening to nothing.
    // connectionTimeoutMillis: an unreachable server fails the attempt (and close() waits for it) in bounded time.
    const client = new (pgModule().Client)({ connectionString: this.url, application_name: LISTENER_APPLICATION_NAME, keepAlive: true, keepAliveInitialDelayMillis: 30_000, connectionTimeoutMillis: 10_000 });
    this.client = client;
    client.on('notification', (msg) => {
      if (msg.channel === WAKE_CHANNEL && msg.payload !== this.token) this.onWake();
    });
    // After the first, later errors of a dropped client are noise; unheard, an 'error' event kills the process.
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${WAKE_CHANNEL}`);
    } catch (err) {
      this.lost(client, err);
      return;
    }
    if (this.client !== client || this.closed) return;
    const first = !this.listened;
    this.listened = true;
    if (this.failures > 0) {
      this.log.info({ op: 'wake.listen' }, `${first ? 'listening now' : 'listening again'} for notifications of due mail on ${this.database}`);
      // Mail made due while no connection listened: look now rather than at the next poll.
      this.onWake();
      this.failures = 0;
    }
  }

  private lost(client: pg.Client, err?: unknown): void {
    if (this.client !== client) return;
    this.client = undefined;
    client.on('error', () => undefined);
    client.end().catch(() => undefined);
    if (this.closed) return;
    // One line per outage (the first failure), not one per reconnection attempt.
    if (this.failures === 0) this.log.warn({ err, op: 'wake.listen' }, listenFailureMessage(this.listened, this.database, this.pollMs));
    this.failures++;
    this.timer = setTimeout(() => {
      this.connecting = this.connect();
    }, reconnectDelayMs(this.failures));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    // An attempt under way ends first (connected, or failed within its timeout): ending a client that is still
    // connecting may wait for an answer that never comes.
    await this.connecting;
    const client = this.client;
    this.client = undefined;
    if (client) {
      client.on('error', () => undefined);
      await client.end().catch(() => undefined);
    }
  }
}
