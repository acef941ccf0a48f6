// MailboxReader on imapflow: TLS or STARTTLS (required when chosen, never silently skipped), password or
// XOAUTH2 (imapflow's accessToken), and UID commands only, so a message read by another client in between
// is still found by its UID. Every failure leaves as an ImapFailure naming the step and the server's reply.
import net from 'node:net';
import { ImapFlow } from 'imapflow';
import { FetchStopped, isFetchStopped } from './fetch-stopped.js';
import { ImapFailure, isParserLimit, toImapFailure, type ImapContext, type ImapStage } from './imap-errors.js';
import { uidSet, type ConnectOptions, type ConnectReader, type FetchedHeaders, type FetchedMessage, type FolderStatus, type ImapCredentials, type ImapEndpoint, type MailboxReader } from './mailbox-reader.js';

export interface ImapTimeouts {
  connectionMs: number;
  greetingMs: number;
  /** Idle only: any byte resets it, so a server sending a line now and then never trips it (commandMs does). */
  socketMs: number;
  /**
   * The most one step may take, however busy the server keeps the socket: connecting with login, SELECT, a
   * SEARCH, a STORE, LOGOUT; a FETCH may take longer while at least `minBytesPerSecond` keep arriving.
   */
  commandMs: number;
  /** The slowest transfer a FETCH batch is allowed time for, per byte it is expected to (or does) carry. */
  minBytesPerSecond: number;
}

// commandMs below the fetch lease (5 minutes): a stuck step fails and is recorded before another worker may
// take the server, instead of every worker getting stuck on it in turn.
export const DEFAULT_IMAP_TIMEOUTS: ImapTimeouts = { connectionMs: 30_000, greetingMs: 16_000, socketMs: 5 * 60_000, commandMs: 2 * 60_000, minBytesPerSecond: 32 * 1024 };
/** Someone is waiting in front of the form. */
export const TEST_IMAP_TIMEOUTS: ImapTimeouts = { connectionMs: 10_000, greetingMs: 10_000, socketMs: 30_000, commandMs: 30_000, minBytesPerSecond: 32 * 1024 };

export function imapClientOptions(endpoint: ImapEndpoint, credentials: ImapCredentials, timeouts: ImapTimeouts): ConstructorParameters<typeof ImapFlow>[0] {
  return {
    host: endpoint.connectAddress ?? endpoint.host,
    port: endpoint.port,
    secure: endpoint.security === 'ssl',
    // Without this imapflow goes on in cleartext when STARTTLS is not offered (or was stripped on the way).
    doSTARTTLS: endpoint.security === 'starttls' ? true : endpoint.security === 'none' ? false : undefined,
    ...(net.isIP(endpoint.host) ? {} : { servername: endpoint.host }),
    tls: { rejectUnauthorized: !endpoint.allowSelfSigned },
    auth: credentials.kind === 'password' ? { user: credentials.user, pass: credentials.pass } : { user: credentials.user, accessToken: credentials.accessToken },
    logger: false,
    disableAutoIdle: true,
    connectionTimeout: timeouts.connectionMs,
    greetingTimeout: timeouts.greetingMs,
    socketTimeout: timeouts.socketMs,
    clientInfo: { name: 'Juniper' },
    // Always: without them imapflow accepts 1 GB literals and 2 GB responses. A connection that reads no
    // message (Test & Confirm) gets the framing alone, 1 MB literals and 2 MB responses.
    ...parserLimits(endpoint.maxMessageBytes ?? 0),
  };
}

/** Room for the response framing (FETCH line, flags, UID) around a message of the largest allowed size. */
const FRAMING_BYTES = 1024 * 1024;

/**
 * Room for the longest response that is no message: a UID SEARCH of a large mailbox (about 7 bytes a UID, so
 * 32 MB is over 4 million messages). Tied to a low size cap, 300,000 UIDs broke every fetch of the mailbox.
 */
const LIST_RESPONSE_BYTES = 32 * 1024 * 1024;

/**
 * imapflow's parser limits for a size cap (0: no message is read, as in Test & Confirm): its defaults (1 GB
 * literals, 2 GB responses) let one reply fill memory. A literal (a message) is held to the cap; a response to
 * the larger of the cap and what a SEARCH of a large mailbox needs.
 */
export function parserLimits(maxMessageBytes: number): { maxLiteralSize: number; maxResponseSize: number } {
  const longest = maxMessageBytes === 0 ? 0 : Math.max(maxMessageBytes, LIST_RESPONSE_BYTES);
  return { maxLiteralSize: maxMessageBytes + FRAMING_BYTES, maxResponseSize: longest + 2 * FRAMING_BYTES };
}

/**
 * Runs one step until it settles, `watch` gives it up (calling `end` with why), or the run is stopped (`signal`):
 * either way the connection is closed, the one thing that ends a command imapflow has sent whatever the server
 * does, and the step fails at once with the reason. A step asked for after the stop is not sent at all.
 */
async function ended<T>(client: ImapFlow, signal: AbortSignal | undefined, watch: (end: (err: Error) => void) => () => void, op: () => Promise<T>): Promise<T> {
  if (signal?.aborted) {
    client.close();
    throw new FetchStopped();
  }
  let unwatch: () => void = () => undefined;
  const giveUp = new Promise<never>((_resolve, reject) => {
    const end = (err: Error) => {
      client.close();
      reject(err);
    };
    const stop = () => end(new FetchStopped());
    const stopWatching = watch(end);
    signal?.addEventListener('abort', stop, { once: true });
    unwatch = () => {
      stopWatching();
      signal?.removeEventListener('abort', stop);
    };
  });
  try {
    return await Promise.race([op(), giveUp]);
  } finally {
    unwatch();
  }
}

/**
 * Runs `op` for at most `ms`: past that the connection is closed (imapflow's idle socket timeout never trips on a
 * server that sends an untagged line now and then) and the step fails, naming the server, the step and the time;
 * at once when `signal` fires.
 */
function withDeadline<T>(client: ImapFlow, ms: number, failure: () => ImapFailure, op: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  return ended(client, signal, (end) => {
    const timer = setTimeout(() => end(failure()), Math.max(0, ms));
    return () => clearTimeout(timer);
  }, op);
}

/**
 * Runs `op` while the server keeps sending: it fails, closing the connection, once `ms` pass without
 * `bytesPerSecond` bytes a second arriving on the socket (checked a few times within `ms`). Unlike a fixed
 * deadline it lets a large message over a slow but working link take what it takes, and unlike the socket's idle
 * timeout an untagged line now and then does not keep it going. Ended at once when `signal` fires.
 */
function whileArriving<T>(client: ImapFlow, ms: number, bytesPerSecond: number, failure: () => ImapFailure, op: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  const read = () => (client as unknown as { socket?: { bytesRead?: number } }).socket?.bytesRead ?? 0;
  const tickMs = Math.min(1000, Math.max(25, ms / 8));
  return ended(client, signal, (end) => {
    let markBytes = read();
    let markAt = Date.now();
    const timer = setInterval(() => {
      const now = Date.now();
      const bytes = read();
      if (bytes - markBytes >= (bytesPerSecond * tickMs) / 1000) {
        markBytes = bytes;
        markAt = now;
      } else if (now - markAt >= ms) end(failure());
    }, tickMs);
    return () => clearInterval(timer);
  }, op);
}

const STAGE_OF: Record<string, ImapStage> = { 'connecting and logging in': 'connect', SELECT: 'folder' };

/** What a step stuck past its deadline says; pure, for the message to be checked on its own. */
export function deadlineMessage(ctx: Pick<ImapContext, 'host' | 'port'>, what: string, ms: number): string {
  return `The IMAP server ${ctx.host}:${ctx.port} did not finish ${what} within ${Math.ceil(ms / 1000)} s: the server kept the connection open without answering, so Juniper closed it; the next fetch tries again.`;
}

function deadlineFailure(ctx: Pick<ImapContext, 'host' | 'port'>, what: string, ms: number): ImapFailure {
  return new ImapFailure(STAGE_OF[what] ?? 'fetch', deadlineMessage(ctx, what, ms), { cause: Object.assign(new Error(`${what} past its deadline`), { code: 'StepDeadline' }) });
}

class ImapReader implements MailboxReader {
  private folder = 'INBOX';
  private status: FolderStatus | undefined;

  constructor(
    private readonly client: ImapFlow,
    private readonly ctx: Omit<ImapContext, 'folder'>,
    private readonly timeouts: ImapTimeouts,
    /** The error that broke the parser stream (a response over its limits), if one did. */
    private readonly streamError: () => unknown,
    /** The run's stop (ConnectOptions.signal): it ends the step in progress and every one after. */
    private readonly signal: AbortSignal | undefined,
  ) {}

  private fail(err: unknown, stage: ImapStage): never {
    // Not the server's doing: left as it is, for the fetcher to record nothing.
    if (isFetchStopped(err)) throw err;
    // A response over the parser's limits destroys the stream: the command in progress may only learn that the
    // connection is gone, while the reason is the stream's error.
    const broke = this.streamError();
    throw toImapFailure(broke !== undefined && !(err instanceof ImapFailure) ? broke : err, stage, { ...this.ctx, folder: this.folder });
  }

  private within<T>(what: string, op: () => Promise<T>, ms = this.timeouts.commandMs): Promise<T> {
    return withDeadline(this.client, ms, () => deadlineFailure(this.ctx, what, ms), op, this.signal);
  }

  /**
   * A FETCH's responses as they come, for as long as they keep coming: a wait for the next one fails once
   * commandMs pass without minBytesPerSecond arriving on the socket (whileArriving). A large message over a slow
   * but working link is never cut; a server that sends an untagged line now and then is, after commandMs,
   * well within the fetch lease. Only the time spent waiting for the server counts: while the caller stores what
   * came, the clock stands.
   */
  private async *streamed<T>(what: string, source: AsyncIterable<T>): AsyncGenerator<T> {
    const { commandMs, minBytesPerSecond } = this.timeouts;
    const it = source[Symbol.asyncIterator]();
    let settled = false;
    try {
      for (;;) {
        settled = false;
        const next = await whileArriving(this.client, commandMs, minBytesPerSecond, () => deadlineFailure(this.ctx, what, commandMs), () => it.next(), this.signal);
        settled = true;
        if (next.done) return;
        yield next.value;
      }
    } finally {
      // The caller stopped early (as for await would, end the FETCH); not after a deadline or a stop: the
      // connection is closed and a pending next() may never settle. Once the run is stopped, ending the FETCH would
      // wait for the server to finish it: the connection is closed instead.
      if (settled && this.signal?.aborted) this.client.close();
      else if (settled) await it.return?.();
    }
  }

  async open(folder: string): Promise<FolderStatus> {
    this.folder = folder;
    try {
      const box = await this.within('SELECT', () => this.client.mailboxOpen(folder));
      this.status = { uidValidity: Number(box.uidValidity), uidNext: box.uidNext, exists: box.exists };
      return this.status;
    } catch (err) {
      this.fail(err, 'folder');
    }
  }

  async listAfter(afterUid: number, exactAbove: number): Promise<{ uid: number; size: number }[]> {
    // "n:*" always names the last message, even below n; nothing newer is knowable from UIDNEXT alone.
    if (this.status && (this.status.exists === 0 || this.status.uidNext <= afterUid + 1)) return [];
    const range = `${afterUid + 1}:*`;
    try {
      // Two SEARCHes (every UID, then those larger than the bound) and the sizes of the large ones only: a FETCH
      // of every message's RFC822.SIZE is one response to parse per message, which cost imapflow about three
      // quarters of what fetching the whole of a small message costs (docs/benchmarks.md).
      const all = (await this.searched({ uid: range })).filter((uid) => uid > afterUid).sort((a, b) => a - b);
      if (all.length === 0) return [];
      const listed = new Set(all);
      // A message that came or went between the two SEARCHes is taken as the first one saw it.
      const large = (await this.searched({ uid: range, larger: exactAbove })).filter((uid) => listed.has(uid));
      const sizes = new Map<number, number>();
      if (large.length) for (const m of await this.within('FETCH of message sizes', () => this.client.fetchAll(uidSet(large), { uid: true, size: true }, { uid: true }))) if (m.size !== undefined) sizes.set(m.uid, m.size);
      // Taken as small, a message over the size cap would be downloaded whole: one the server calls large
      // without saying how large stops the run (an expunged one is gone by the next run).
      const unsized = large.find((uid) => !sizes.has(uid));
      if (unsized !== undefined) this.fail(Object.assign(new Error(`the server listed message UID ${unsized} as larger than ${exactAbove} bytes but gave no RFC822.SIZE for it`), { code: 'SizeMissing' }), 'fetch');
      return all.map((uid) => ({ uid, size: sizes.get(uid) ?? exactAbove }));
    } catch (err) {
      this.fail(err, 'fetch');
    }
  }

  /**
   * UIDs of a UID SEARCH. imapflow answers a refused one (NO, BAD: a busy or throttled server) with false, not
   * an error; read as "none", it would end a run as healthy with nothing fetched, mark nothing of a gap while
   * the cursor moves on, or take every message as small and download one over the cap whole.
   */
  private async searched(query: Parameters<ImapFlow['search']>[0]): Promise<number[]> {
    const uids = await this.within('SEARCH', () => this.client.search(query, { uid: true }));
    if (!Array.isArray(uids)) this.fail(Object.assign(new Error(this.client.usable ? 'the server did not accept UID SEARCH' : 'Connection not available'), { code: this.client.usable ? 'SearchFailed' : 'NoConnection' }), 'fetch');
    return uids;
  }

  async firstUnseen(): Promise<number | undefined> {
    if (this.status?.exists === 0) return undefined;
    try {
      // A refused SEARCH read as "all read" would start a first fetch at UIDNEXT, past every unseen message.
      return lowest(await this.searched({ seen: false }));
    } catch (err) {
      this.fail(err, 'fetch');
    }
  }

  async *fetch(uids: number[]): AsyncIterable<FetchedMessage> {
    if (uids.length === 0) return;
    // Streamed: the caller stores each message as it arrives. No other IMAP command may run until this
    // generator is done (imapflow queues it behind the FETCH), so the caller marks \Seen after the batch.
    // Responses come in sequence order, which is UID order.
    try {
      const source = this.client.fetch(uidSet(uids), { uid: true, source: true }, { uid: true });
      for await (const m of this.streamed(`FETCH of ${uids.length} message${uids.length === 1 ? '' : 's'}`, source)) if (m.source) yield { uid: m.uid, source: m.source };
    } catch (err) {
      this.fail(err, 'fetch');
    }
  }

  async *fetchHeaders(uids: number[], maxBytes: number): AsyncIterable<FetchedHeaders> {
    if (uids.length === 0) return;
    const rows = [];
    try {
      // BODY.PEEK[HEADER]<0.maxBytes>: a partial fetch, so a message over the cap with a huge header section
      // still costs at most maxBytes.
      const source = this.client.fetch(uidSet(uids), { uid: true, bodyParts: [{ key: 'header', start: 0, maxLength: maxBytes }] }, { uid: true });
      for await (const m of this.streamed(`FETCH of ${uids.length} header section${uids.length === 1 ? '' : 's'}`, source)) rows.push(m);
    } catch (err) {
      this.fail(err, 'fetch');
    }
    rows.sort((a, b) => a.uid - b.uid);
    for (const m of rows) {
      const headers = m.headers ?? m.bodyParts?.get('header') ?? [...(m.bodyParts?.values() ?? [])][0];
      if (headers) yield { uid: m.uid, headers };
    }
  }

  async markSeen(uids: number[]): Promise<void> {
    if (uids.length === 0) return;
    let stored: boolean;
    try {
      // .SILENT: the server would otherwise answer with every message's new flags, one FETCH line each, which
      // nobody reads here and imapflow parses all the same.
      stored = await this.within('STORE \\Seen', () => this.client.messageFlagsAdd(uidSet(uids), ['\\Seen'], { uid: true, silent: true }));
    } catch (err) {
      this.fail(err, 'fetch');
    }
    // imapflow answers a failed STORE (a dropped connection, a NO) with false, not an error: taken as done, the
    // cursor of the marked messages would move and they would stay unread in the mailbox for good.
    if (!stored) this.fail(Object.assign(new Error(this.client.usable ? 'the server did not accept STORE \\Seen' : 'Connection not available'), { code: this.client.usable ? 'StoreFailed' : 'NoConnection' }), 'fetch');
  }

  /** LOGOUT; after a stop, or when that fails, the connection is just closed. */
  async close(): Promise<void> {
    try {
      await this.within('LOGOUT', () => this.client.logout());
    } catch {
      this.client.close();
    }
  }
}

/** The smallest of the numbers, by a loop: Math.min(...list) throws a RangeError past ~125,000 arguments. */
export function lowest(list: readonly number[]): number | undefined {
  let min: number | undefined;
  for (const n of list) if (min === undefined || n < min) min = n;
  return min;
}

export function imapConnector(timeouts: ImapTimeouts = DEFAULT_IMAP_TIMEOUTS): ConnectReader {
  return async (endpoint, credentials, options: ConnectOptions = {}) => {
    const { signal } = options;
    const client = new ImapFlow(imapClientOptions(endpoint, credentials, timeouts));
    // Socket errors after connect also surface as rejections of the command in progress; a parser error (a
    // response over the limits) is kept, as the command only learns that the connection closed.
    let streamError: unknown;
    client.on('error', (err: unknown) => {
      if (!isParserLimit(err)) return;
      streamError ??= err;
      // imapflow stops parsing but leaves the socket open (and the server writing into it).
      client.close();
    });
    const ctx = { host: endpoint.host, port: endpoint.port, security: endpoint.security, auth: credentials.kind === 'oauth2' ? ('outlook' as const) : ('password' as const), user: credentials.user };
    const what = 'connecting and logging in';
    try {
      await withDeadline(client, timeouts.commandMs, () => deadlineFailure(ctx, what, timeouts.commandMs), () => client.connect(), signal);
    } catch (err) {
      client.close();
      if (isFetchStopped(err)) throw err;
      throw toImapFailure(!(err instanceof ImapFailure) && streamError !== undefined ? streamError : err, 'connect', { ...ctx, folder: '' });
    }
    return new ImapReader(client, ctx, timeouts, () => streamError, signal);
  };
}
