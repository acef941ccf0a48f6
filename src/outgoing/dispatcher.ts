// Sends the queue. Each round claims a batch with a lease, routes every mail at claim time (so a server
// added or fixed meanwhile is used), groups the mails by server and sends each group over that server's
// pooled connection. Every outcome is written back by the lease holder only. Runs inside `juniper serve`
// and alone as `juniper worker`; several workers may share a PostgreSQL database.
import os from 'node:os';
import crypto from 'node:crypto';
import type { OutgoingMail, OutgoingServer } from '../db/schema.js';
import { retryDelayMs, MAX_ATTEMPTS } from '../lib/backoff.js';
import { isAppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { parseMailbox } from '../lib/address.js';
import type { Parameters } from '../settings/parameters.js';
import { classifySendError, smtpErrorFacts } from './delivery-failure.js';
import { isSmtpAuthDisabled } from './smtp-transport.js';
import type { Envelope, MailTransport, SendResult } from './mail-transport.js';
import type { ClaimedMail, OutgoingAttachmentRow, OutgoingQueue, SendOutcome } from './queue.js';
import { SentWriter } from './sent-writer.js';
import { countSendFailure, countSent, timedSend, trailRouted } from '../metrics/send-metrics.js';
import { routeMail, routeParametersFrom, type RouteDecision } from './routing.js';
import { activeTransport, ratePerMinuteOf } from './server-rules.js';
import { toRoutable, type OutgoingServers } from './servers.js';
import { PACED } from './queue.js';
import { isRecipientLimit, splitRefusals } from './partial-delivery.js';
import { concurrencyOf, type TransportPool } from './transport-pool.js';
import { admits, excessOf, STALL_MS, STALLED_SENDS_PER_CONNECTION } from './server-stall.js';

export interface DispatcherOptions {
  batchSize: number;
  leaseMs: number;
  /** How long an idle dispatcher sleeps before looking again (enqueue in the same process wakes it at once). */
  pollMs: number;
  /** A mail waiting for its server to be fixed (token, SMTP AUTH) fails after this age. */
  maxWaitAgeMs: number;
  /** How often a waiting mail looks again whether its server was fixed. */
  waitRecheckMs: number;
  /** Leases held (sends under way) at most, across pipelined claims (default: batchSize, the bound a kill can repeat). */
  maxInFlight?: number;
  /** A server none of whose sends settled for this long keeps only its oldest sends (server-stall.ts; default STALL_MS). */
  stallMs?: number;
}

/** A worker's sends of one server, oldest first; when one last settled; how many it keeps once stalled. */
interface ServerSends {
  sends: TrackedSend[];
  progressAt: number;
  cap: number;
}

/** A send under way, in its server's list (oldest first), with the switch that gives it back to the queue. */
interface TrackedSend {
  mailId: number;
  giveBack: AbortController;
}

/** A rate-limit slot further away than this puts the mail back in the queue instead of holding it. */
export const MAX_PACING_WAIT_MS = 5000;

/** How long a dispatcher with sends under way lets enqueued mails gather before claiming them. */
const COALESCE_MS = 10;

/**
 * How often the loop looks for mails whose lease expired (a dead worker's). The look costs a statement per
 * claim round, hundreds a second when busy, for something that turns up only after a whole lease (minutes).
 */
const EXPIRED_CHECK_MS = 1000;

/** How often a loop waiting for room looks for stalled servers whose sends to give back. */
const STALL_CHECK_MS = 1000;

export const defaultDispatcherOptions: DispatcherOptions = {
  batchSize: 50,
  leaseMs: 2 * 60 * 1000,
  pollMs: 1000,
  maxWaitAgeMs: 3 * 24 * 60 * 60 * 1000,
  waitRecheckMs: 5 * 60 * 1000,
};

/**
 * The servers a claimed mail names (forced, or the dedicated mass-mailing server) that are not usable: routing
 * needs them to say what they are (archived, inactive), as the Route checker does. Usually none, so no query.
 */
function namedNotUsable(claimed: readonly ClaimedMail[], p: { massMailingDedicatedServer: boolean; massMailingServerId: number | null }, usable: ReadonlyMap<number, unknown>): number[] {
  const ids = new Set<number>();
  for (const m of claimed) {
    const named = m.forced_server_id ?? (m.mass_mailing === 1 && p.massMailingDedicatedServer ? p.massMailingServerId : null);
    if (named !== null && !usable.has(named)) ids.add(named);
  }
  return [...ids];
}

/** The pause after `failures` failed rounds in a row: pollMs, doubling, at most 30 s. */
export function roundBackoffMs(failures: number, pollMs: number): number {
  return Math.min(30_000, pollMs * 2 ** Math.max(0, failures - 1));
}

function lostWrites(lost: unknown[], of: number): AggregateError {
  // Those mails stay `sending` under this worker's lease: when it expires they are claimed again
  // (at-least-once), and the claim's attempt count still bounds them.
  return new AggregateError(lost, `${lost.length} of ${of} mails of this round could not be recorded; they are tried again when their lease expires`);
}

export function workerId(): string {
  return `${os.hostname()}:${process.pid}:${crypto.randomBytes(3).toString('hex')}`;
}

/** Every recipient address (to, cc, bcc) for the SMTP envelope; a follow-up's deferred recipients only. */
export function envelopeRecipients(mail: Pick<OutgoingMail, 'to_addrs' | 'cc_addrs' | 'bcc_addrs'> & Partial<Pick<OutgoingMail, 'envelope_to'>>): string[] {
  if (mail.envelope_to) return JSON.parse(mail.envelope_to) as string[];
  const all = [mail.to_addrs, mail.cc_addrs, mail.bcc_addrs].flatMap((j) => JSON.parse(j) as string[]);
  return all.map((a) => parseMailbox(a)?.address ?? a);
}

export class Dispatcher {
  readonly owner: string;
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  /** A nudge came while the loop was not asleep (see nudge). */
  private nudged = false;
  /** Every send under way, of any round: the loop claims more while they run, stop() waits for them all. */
  private readonly inFlight = new Set<Promise<void>>();
  /** Mails this worker holds a lease on while their send runs; one timer renews them all. */
  private readonly held = new Set<number>();
  private renewTimer: NodeJS.Timeout | undefined;
  private slotFreed: (() => void) | undefined;
  private readonly sent: SentWriter;
  /** When the loop last looked for expired leases (runOnce always looks). */
  private expiredCheckedAt = -Infinity;
  /** Per server, this worker's sends under way and when one last settled (server-stall.ts). */
  private readonly byServer = new Map<number, ServerSends>();
  /** Mails whose last attempt ended at its deadline (no answer: no progress of their server). */
  private readonly unanswered = new Set<number>();

  constructor(
    private readonly deps: {
      queue: OutgoingQueue;
      servers: OutgoingServers;
      parameters: Parameters;
      transports: TransportPool;
      log: Logger;
      owner?: string;
      now?: () => number;
    },
    private readonly options: DispatcherOptions = defaultDispatcherOptions,
  ) {
    this.owner = deps.owner ?? workerId();
    this.sent = new SentWriter(deps.queue, this.owner);
  }

  private now(): number {
    return this.deps.now?.() ?? Date.now();
  }

  private get maxInFlight(): number {
    return this.options.maxInFlight ?? this.options.batchSize;
  }

  /**
   * One round: claim a batch and send it. Resolves to the number of mails the round took (claimed, or failed
   * as crashed by the claim). The batch's leases are renewed until every send has settled, even when one
   * mail's bookkeeping write fails: the round then rejects, after the others' outcomes are recorded.
   */
  async runOnce(): Promise<number> {
    const round = await this.claimAndStart(this.options.batchSize);
    const results = await Promise.allSettled(round.sends);
    if (round.setupError !== undefined) throw round.setupError;
    const lost = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (lost.length > 0) throw lostWrites(lost, round.sends.length);
    return round.taken;
  }

  /**
   * Claims up to `limit` mails, routes them and starts their sends without waiting for them. `taken` counts
   * the mails claimed and those the claim failed as crashed; `setupError` is set when reading the servers or
   * parameters failed (the mails not started stay claimed until their lease ends).
   */
  private async claimAndStart(limit: number, fromLoop = false): Promise<{ taken: number; sends: Promise<void>[]; setupError?: Error }> {
    const { queue, servers, parameters, log } = this.deps;
    const now = this.now();
    const expired = !fromLoop || now - this.expiredCheckedAt >= EXPIRED_CHECK_MS;
    if (expired) this.expiredCheckedAt = now;
    const setupReads = () => Promise.all([servers.usable(), parameters.snapshot()]);
    // Busy (sends under way), the claim almost surely finds mails: the servers and parameters are read while it
    // runs, not after it. On PostgreSQL that is two round trips fewer between a claim and its first send, time
    // in which the pooled connections ran dry (a quarter of the queue → sent phase was idle). Idle, the claim
    // goes first, so an empty poll stays one statement.
    const prefetched = fromLoop && this.inFlight.size > 0 ? setupReads() : undefined;
    prefetched?.catch(() => undefined);
    const { claimed, crashed } = await queue.claimBatch(this.owner, limit, this.options.leaseMs, now, { expired });
    for (const mail of crashed) log.error({ mail: mail.id, op: 'claim', failureType: 'crashed', attempts: mail.attempts }, mail.failure_reason ?? 'crashed');
    const sends: Promise<void>[] = [];
    if (claimed.length === 0) return { taken: crashed.length, sends };
    // Each mail's work settles on its own: a failed write for one must not end the others' sends (or the
    // lease renewal) while they are still running.
    const started = new Set<number>();
    const settle = (id: number, task: () => Promise<void>) => {
      started.add(id);
      this.hold(id);
      const p = task().finally(() => {
        this.release(id);
        this.inFlight.delete(p);
        this.slotFreed?.();
      });
      this.inFlight.add(p);
      sends.push(p);
    };
    let setupError: Error | undefined;
    try {
      // One SELECT for the whole batch's attachments instead of one per mail, under way while the servers are read.
      const attachmentsRead = queue.attachmentsOf(claimed.map((m) => m.id));
      attachmentsRead.catch(() => undefined);
      const [usable, snapshot] = await (prefetched ?? setupReads());
      const byId = new Map(usable.map((s) => [s.id, s]));
      const routeParams = routeParametersFrom(snapshot);
      const routable = [...usable.map(toRoutable), ...(await servers.routableByIds(namedNotUsable(claimed, snapshot, byId)))];
      const attachments = await attachmentsRead;
      // routeMail is pure and its servers and parameters are fixed for the round, so mails with the same routing
      // input (a batch is mostly a few senders) share one decision: parsing the From, normalising the
      // notifications and bounce addresses and writing the explanation was a tenth of the dispatcher's own CPU.
      const decisions = new Map<string, RouteDecision>();
      for (const mail of claimed) {
        const input = { from: mail.from_header, replyTo: mail.reply_to, forcedServerId: mail.forced_server_id, massMailing: mail.mass_mailing === 1, createdByUserId: mail.created_by_user_id };
        const key = JSON.stringify([input.from, input.replyTo, input.forcedServerId, input.massMailing, input.createdByUserId]);
        let decision = decisions.get(key);
        if (decision === undefined) decisions.set(key, (decision = routeMail(input, routable, routeParams)));
        if (!decision.ok && decision.failureType === 'mass_mailing_server_unavailable') {
          // A setting to put right, not the mail's fault: it waits (no attempt counted), as for a reconnect.
          const why = { failureType: decision.failureType, reason: decision.reason };
          settle(mail.id, async () => {
            const failed = await this.waitOrExpire(mail, why, decision.serverId === undefined ? {} : { serverId: decision.serverId });
            countSendFailure(decision.serverId ?? null, failed ? 'fail' : 'wait', failed);
            // Once per mail, not at every recheck: a waiting mass mailing is thousands of mails.
            const facts = { mail: mail.id, op: 'route', failureType: decision.failureType };
            if (failed) log.warn(facts, decision.reason);
            else if (mail.failure_type !== decision.failureType) log.info(facts, decision.reason);
          });
          continue;
        }
        if (!decision.ok) {
          settle(mail.id, async () => {
            await queue.markFailed(mail.id, this.owner, { failureType: decision.failureType, reason: decision.reason });
            countSendFailure(null, 'fail', true);
            log.warn({ mail: mail.id, op: 'route', failureType: decision.failureType }, decision.reason);
          });
          continue;
        }
        for (const w of decision.warnings) log.warn({ mail: mail.id, server: decision.serverId, op: 'route' }, w);
        const server = byId.get(decision.serverId)!;
        trailRouted(log, mail.id, server.id, decision.rule);
        const route = { from: decision.from, replyTo: decision.replyTo, envelopeFrom: decision.envelopeFrom };
        const sends = this.sendsOf(server);
        if (!admits({ inFlight: sends.sends.length, progressAt: sends.progressAt }, sends.cap, now, this.stallMs)) {
          settle(mail.id, () => this.giveBack(server, mail));
          continue;
        }
        const tracked: TrackedSend = { mailId: mail.id, giveBack: new AbortController() };
        sends.sends.push(tracked);
        settle(mail.id, () => this.sendOne(server, mail, route, attachments.get(mail.id) ?? [], tracked.giveBack.signal).finally(() => this.untrack(server.id, tracked)));
      }
    } catch (err) {
      setupError = err instanceof Error ? err : new Error(String(err));
      // The mails not started are not at fault: give them back without counting the claim as an attempt, or a
      // flapping database would push innocent mails towards `crashed`. If that write fails too, their leases end.
      const idle = claimed.filter((m) => !started.has(m.id)).map((m) => m.id);
      if (idle.length) await queue.unclaim(idle, this.owner).catch((e: unknown) => log.warn({ err: e, op: 'dispatch' }, 'could not give back claimed mails; their leases will end'));
    }
    return { taken: claimed.length + crashed.length, sends, ...(setupError ? { setupError } : {}) };
  }

  private hold(id: number): void {
    this.held.add(id);
    this.renewTimer ??= setInterval(() => {
      this.deps.queue.renewLeases(this.owner, [...this.held], this.options.leaseMs).catch((err: unknown) => this.deps.log.warn({ err }, 'lease renewal failed'));
    }, Math.max(1000, this.options.leaseMs / 3));
  }

  private get stallMs(): number {
    return this.options.stallMs ?? STALL_MS;
  }

  private sendsOf(server: OutgoingServer): ServerSends {
    let entry = this.byServer.get(server.id);
    if (!entry) this.byServer.set(server.id, (entry = { sends: [], progressAt: this.now(), cap: 1 }));
    // The latest pool size applies (it may be edited while mails are under way).
    entry.cap = STALLED_SENDS_PER_CONNECTION * concurrencyOf(server);
    return entry;
  }

  private untrack(serverId: number, tracked: TrackedSend): void {
    const entry = this.byServer.get(serverId);
    // Progress is an answer from the server: not a send given back, nor one its deadline ended.
    const answered = !tracked.giveBack.signal.aborted && !this.unanswered.delete(tracked.mailId);
    if (!entry) return;
    entry.sends = entry.sends.filter((t) => t !== tracked);
    if (answered) entry.progressAt = this.now();
    if (entry.sends.length === 0) this.byServer.delete(serverId);
  }

  /**
   * Gives back the newest sends of every stalled server over its cap (server-stall.ts): each leaves the send
   * slot line or nodemailer's queue (closing its connection if it had one) and goes back to the queue. Called by
   * the loop while it waits for room, so a stalled server's mails do not keep the others from being claimed.
   */
  private giveBackStalled(): void {
    const now = this.now();
    for (const entry of this.byServer.values()) {
      const excess = excessOf({ inFlight: entry.sends.length, progressAt: entry.progressAt }, entry.cap, now, this.stallMs);
      if (excess > 0) for (const t of entry.sends.slice(-excess)) t.giveBack.abort();
    }
  }

  /**
   * Back to the queue without an attempt (a stalled server's, not the mail's, fault), due again after stallMs; the
   * mails so given back keep their order among themselves (the claim takes them by due time, then id).
   */
  private async giveBack(server: OutgoingServer, mail: ClaimedMail): Promise<void> {
    const sends = this.byServer.get(server.id)?.sends.length ?? 0;
    const reason = `Outgoing server "${server.name}" has ${sends} sends under way of which none finished for ${Math.round(this.stallMs / 100) / 10} s or more; the mail waits its turn in the queue (no attempt counted).`;
    await this.deps.queue.markRetry(mail.id, this.owner, { at: this.now() + this.stallMs, failureType: 'server_stalled', reason, waiting: true });
    this.deps.log.info({ mail: mail.id, server: server.id, op: 'send', failureType: 'server_stalled' }, reason);
  }

  private release(id: number): void {
    this.held.delete(id);
    if (this.held.size === 0 && this.renewTimer) {
      clearInterval(this.renewTimer);
      this.renewTimer = undefined;
    }
  }

  private async sendOne(server: OutgoingServer, mail: ClaimedMail, route: { from: string; replyTo: string | null; envelopeFrom: string }, attachments: readonly OutgoingAttachmentRow[], giveBack?: AbortSignal): Promise<void> {
    const { queue, log } = this.deps;
    const outcome = { serverId: server.id, effectiveFrom: route.from, envelopeFrom: route.envelopeFrom };
    const logCtx = { mail: mail.id, server: server.id, op: 'send' };
    if (server.auth === 'outlook' && server.token_status === 'needs_reconnect') {
      const reason = `Outgoing server "${server.name}" needs its Outlook account reconnected${server.token_error_message ? `: ${server.token_error_message}` : ''}. The mail is sent once it is reconnected.`;
      await this.waitOrExpire(mail, { failureType: 'needs_reconnect', reason }, outcome);
      return;
    }
    let result: SendResult;
    try {
      const transport = this.deps.transports.get(server);
      // The server's rate limit: a slot soon is waited for here; a later one puts the mail back until then,
      // so a paced server does not hold this worker's in-flight slots (nor counts an attempt). A mail put
      // back so comes again at its slot and then goes at once.
      // A mail put back for its slot goes at once when it comes (its turn was reserved), unless the server was
      // throttled meanwhile: then it waits for the pause's end like the others, again without an attempt.
      if (mail.failure_type !== PACED || this.deps.transports.pausedAt(server.id, this.now()) !== undefined) {
        const slot = this.deps.transports.reserveSlot(server, this.now(), MAX_PACING_WAIT_MS);
        if (slot > this.now() + MAX_PACING_WAIT_MS) {
          const paused = this.deps.transports.pausedAt(server.id, this.now());
          const why = paused !== undefined
            ? `Throttled: Microsoft asked outgoing server "${server.name}" to send nothing until ${new Date(paused).toISOString()} (429 Retry-After); the mail goes then.`
            : `Paced: outgoing server "${server.name}" sends at most ${ratePerMinuteOf(server)} mails a minute.`;
          await queue.defer(mail.id, this.owner, this.deps.transports.reserveSlot(server, this.now()), why);
          log.debug(logCtx, 'paced by the server\'s rate limit');
          return;
        }
        if (slot > this.now()) await new Promise((r) => setTimeout(r, slot - this.now()));
      }
      // A mail with bytes to read (attachments, a raw .eml) is built only once its server has room for it (a
      // connection free or about to be, send-slots.ts): the other claimed ones wait as rows instead of as
      // messages holding their bytes. A mail without is built from its row alone and goes at once: making it wait
      // too left connections idle between mails (queue → sent 0.68x of raw against 0.92x, three pairs of runs).
      const freeSlot = attachments.length > 0 || mail.raw_sha256 ? await this.deps.transports.sendSlot(server, giveBack) : undefined;
      try {
        result = await this.buildAndSend(server, transport, mail, route, attachments, giveBack);
      } finally {
        freeSlot?.();
      }
    } catch (err) {
      // Given back (its server stalled): to the queue without an attempt, unless the server may have received the
      // whole message; that is recorded as the failed attempt it was (retried, may arrive twice).
      // (A Graph send does not watch the switch: it ends within its own timeout and is recorded as it ended.)
      if (giveBack?.aborted && (err === giveBack.reason || (isAppError(err) && err.code === 'JUNIPER_ERR_SEND_CANCELLED' && err.details?.stage !== 'written'))) return this.giveBack(server, mail);
      // Ended at its deadline: no answer, so no progress of its server (untrack reads it).
      if (isAppError(err) && err.code === 'JUNIPER_ERR_SEND_DEADLINE') this.unanswered.add(mail.id);
      // An auto server whose tenant refused SMTP AUTH moves to Graph, and this mail goes again through Graph
      // at once (the switched server's transport is graph, so this happens once per mail).
      const switched = await this.switchToGraph(server, err);
      if (switched) return this.sendOne(switched, mail, route, attachments, giveBack);
      await this.recordSendFailure(server, mail, err, outcome);
      return;
    }
    // Outside the try: a failed write of an accepted mail is not a send failure (re-queuing it would send it
    // twice at once); it rejects, and the mail's lease decides. Written together with the other mails sent
    // meanwhile (one statement, one commit).
    const { refused, deferred } = splitRefusals(result.rejected);
    if (deferred.length) await this.recordPartlySent(server, mail, outcome, result.response, refused, deferred);
    else await this.sent.record({ id: mail.id, ...outcome, response: result.response, rejected: refused });
    countSent(server.id, log, mail.id, result.response);
    if (refused.length) log.warn({ ...logCtx, rejected: refused.length }, 'sent, but the server refused some recipients');
    else if (!deferred.length) log.debug(logCtx, 'sent');
  }

  /**
   * Some recipients deferred (4xx at RCPT TO) while others were accepted: sent to the accepted ones, and the
   * deferred ones become a follow-up mail in the same transaction (queue.markPartlySent), due after the usual
   * backoff, or at once past the server's recipient limit.
   */
  private async recordPartlySent(server: OutgoingServer, mail: ClaimedMail, outcome: SendOutcome, response: string, refused: { address: string; response: string }[], deferred: { address: string; response: string }[]): Promise<void> {
    // Past the server's recipient limit the rest is due at once, without an attempt; other deferrals wait.
    const limit = isRecipientLimit(deferred);
    const at = limit ? this.now() : this.now() + retryDelayMs(mail.attempts);
    const followUp = await this.deps.queue.markPartlySent(mail, this.owner, { ...outcome, response, refused, deferred }, { at, serverName: server.name, countsAttempt: !limit });
    if (followUp !== undefined) this.deps.log.warn({ mail: mail.id, server: server.id, op: 'send', deferred: deferred.length, followUp }, `sent, but the server deferred ${deferred.length} recipient(s); they are retried in mail ${followUp}`);
  }

  /**
   * Reads the mail's message (its attachments' bytes) and sends it. A function of its own so that nothing in
   * sendOne keeps the message, and so its bytes, reachable while the `sent` write waits for its statement.
   */
  private async buildAndSend(server: OutgoingServer, transport: MailTransport, mail: ClaimedMail, route: { from: string; replyTo: string | null; envelopeFrom: string }, attachments: readonly OutgoingAttachmentRow[], giveBack?: AbortSignal): Promise<SendResult> {
    const message = await this.deps.queue.message(mail, attachments);
    message.from = route.from;
    message.replyTo = route.replyTo;
    const envelope: Envelope = { from: route.envelopeFrom, to: envelopeRecipients(mail) };
    return timedSend(server.id, () => transport.send(message, envelope, giveBack ? { signal: giveBack } : {}));
  }

  /**
   * The server as it is after moving to Graph, when it is an auto server and the error is Microsoft's 535
   * 5.7.139 (SMTP AUTH disabled); undefined otherwise. Every mail of a batch that meets the refusal gets here:
   * the first one switches the server (a conditional write), the others find it switched.
   */
  private async switchToGraph(server: OutgoingServer, err: unknown): Promise<OutgoingServer | undefined> {
    if (server.auth !== 'outlook' || server.transport !== 'auto' || activeTransport(server) !== 'smtp' || !isSmtpAuthDisabled(err)) return undefined;
    const { servers, log } = this.deps;
    const facts = smtpErrorFacts(err);
    const reason = `Microsoft refused SMTP AUTH for ${server.username ?? 'the mailbox'}: ${facts.response ?? facts.message}`;
    const switched = await servers.switchToGraph(server.id, reason, this.now());
    if (switched.changed) log.warn({ server: server.id, op: 'send', failureType: 'smtp_auth_disabled' }, `outgoing server "${server.name}" now sends through Microsoft Graph: ${reason}`);
    return { ...server, transport_switched_at: switched.at, transport_switch_reason: switched.reason };
  }

  private async recordSendFailure(server: OutgoingServer, mail: ClaimedMail, err: unknown, outcome: SendOutcome): Promise<void> {
    const { queue, log } = this.deps;
    const logCtx = { mail: mail.id, server: server.id, op: 'send' };
    const c = classifySendError(err, { auth: server.auth, endpoint: { host: server.host, port: server.port } });
    const facts = { ...logCtx, failureType: c.failureType, action: c.action, responseCode: c.responseCode };
    let action: string = c.action;
    // Throttled (Retry-After): whatever becomes of this mail, the server pauses, so the mails behind it wait
    // without meeting the same refusal.
    if (c.retryAfterMs !== undefined) this.deps.transports.pause(server.id, this.now() + c.retryAfterMs);
    if (c.action === 'fail') {
      await queue.markFailed(mail.id, this.owner, c, outcome);
      log.warn(facts, c.reason);
    } else if (c.action === 'wait') {
      // A mail that waited too long fails here: count it as failed, not as one more wait.
      if (await this.waitOrExpire(mail, c, outcome)) action = 'fail';
      log.warn(facts, c.reason);
    } else if (mail.attempts >= MAX_ATTEMPTS) {
      await queue.markFailed(mail.id, this.owner, { failureType: c.failureType, reason: `${c.reason} (gave up after ${mail.attempts} attempts)` }, outcome);
      log.warn(facts, `giving up: ${c.reason}`);
    } else {
      // A Retry-After lengthens the backoff, never shortens it: throttling that lasts must not use up the
      // attempts in minutes. The server pauses too, so the mails behind this one wait without trying.
      await queue.markRetry(mail.id, this.owner, { at: this.now() + Math.max(c.retryAfterMs ?? 0, retryDelayMs(mail.attempts)), failureType: c.failureType, reason: c.reason, waiting: false }, outcome);
      log.info(facts, `will retry: ${c.reason}`);
    }
    if (!isAppError(err) && c.failureType === 'internal') log.error({ ...logCtx, err }, 'unexpected send error');
    countSendFailure(server.id, action, mail.attempts >= MAX_ATTEMPTS, log, mail.id, c.reason);
  }

  /** True when the mail waited longer than maxWaitAgeMs and was failed instead. */
  private async waitOrExpire(mail: ClaimedMail, why: { failureType: string; reason: string }, outcome: Partial<SendOutcome>): Promise<boolean> {
    // A manual retry restarts the clock: whoever retried a waiting mail wants it to wait again.
    if (this.now() - Math.max(mail.created_at, mail.retried_at ?? 0) > this.options.maxWaitAgeMs) {
      const days = Math.round(this.options.maxWaitAgeMs / 86_400_000);
      await this.deps.queue.markFailed(mail.id, this.owner, { failureType: why.failureType, reason: `${why.reason} Gave up after waiting ${days} days.` }, outcome);
      return true;
    }
    await this.deps.queue.markRetry(mail.id, this.owner, { at: this.now() + this.options.waitRecheckMs, ...why, waiting: true }, outcome);
    return false;
  }

  /**
   * Starts the loop. It claims the next batch while the current one is still sending (pipelined), as long as
   * fewer than maxInFlight sends are under way, so the pooled connections never sit idle between batches;
   * with nothing due it sleeps pollMs (or until nudged).
   */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = (async () => {
      // Failed rounds in a row (the database is away, say): the loop backs off up to 30 s and logs the first
      // failure as an error, then one line per backoff step, so an outage does not fill the log every second.
      let failures = 0;
      while (this.running) {
        // Claim again once half the allowance is free: the connections get the next mails before they run
        // dry, and this process never holds more than maxInFlight leases (one batch: what a kill can repeat).
        const room = this.maxInFlight - this.inFlight.size;
        if (room < Math.ceil(this.maxInFlight / 2)) {
          // Also woken every so often to give back a stalled server's newest sends (server-stall.ts): without
          // that, a server that holds its sends until their deadline would hold this loop as long.
          let timer: NodeJS.Timeout | undefined;
          await new Promise<void>((resolve) => {
            this.slotFreed = resolve;
            timer = setTimeout(resolve, Math.min(this.stallMs, STALL_CHECK_MS));
          });
          clearTimeout(timer);
          this.slotFreed = undefined;
          this.giveBackStalled();
          continue;
        }
        let taken = 0;
        // A nudge from here on may be for a mail this claim does not see yet: it must cut the next sleep short.
        this.nudged = false;
        try {
          const round = await this.claimAndStart(room, true);
          taken = round.taken;
          for (const p of round.sends) p.catch((err: unknown) => this.deps.log.error({ err, op: 'dispatch' }, lostWrites([err], 1).message));
          if (round.setupError) throw round.setupError;
          if (failures > 0) this.deps.log.info({ op: 'dispatch', failures }, `dispatcher rounds work again after ${failures} failed round(s)`);
          failures = 0;
        } catch (err) {
          failures++;
          const message = `dispatcher round failed${failures > 1 ? ` (${failures} in a row)` : ''}; trying again in ${Math.round(roundBackoffMs(failures, this.options.pollMs) / 1000)} s`;
          if (failures === 1) this.deps.log.error({ err, op: 'dispatch' }, message);
          else if ((failures & (failures - 1)) === 0) this.deps.log.warn({ err, op: 'dispatch' }, message);
        }
        if (failures > 0) await this.sleep(roundBackoffMs(failures, this.options.pollMs));
        else if (taken < room && this.running) {
          await this.sleep(this.options.pollMs);
          // Woken by an enqueue while sends are still under way: the connections are busy anyway, so let a
          // few more mails arrive and claim them together (one claim round per mail cost more than the mail).
          if (this.running && this.inFlight.size > 0) await new Promise((r) => setTimeout(r, COALESCE_MS));
        }
      }
    })();
  }

  /**
   * Wakes a sleeping loop (a mail was just enqueued, here or in another process). One that arrives while the
   * loop is claiming is kept, so the loop does not then sleep a whole poll with that mail due.
   */
  nudge(): void {
    if (this.wake) this.wake();
    else this.nudged = true;
  }

  /** Stops claiming, waits for every send under way to be recorded, then closes the connections. */
  async stop(): Promise<void> {
    this.running = false;
    // Also when the loop is mid-round: a failing round's backoff (up to 30 s) must not delay the stop.
    this.nudge();
    this.slotFreed?.();
    await this.loop;
    await Promise.allSettled([...this.inFlight]);
    this.deps.transports.closeAll();
  }

  private sleep(ms: number): Promise<void> {
    if (this.nudged) {
      this.nudged = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.wake = undefined;
        resolve();
      };
      const t = setTimeout(done, ms);
      this.wake = done;
    });
  }
}
