// One transport per server, rebuilt when the server's settings change (its updated_at moves) or it moves to
// Graph, so an admin's fix takes effect on the next batch without a restart: a pooled SMTP transport, or for
// an Outlook server whose active transport is Graph, Graph's sendMail with the connection's Graph token.
import type { OutgoingServer } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import type { HostGuard } from '../mail-servers/host-guard.js';
import type { TokenProvider } from '../oauth/token-provider.js';
import type { MailTransport, SmtpCredentials, SmtpEndpoint, AccessTokenSource } from './mail-transport.js';
import { createGraphTransport, GRAPH_MAX_CONCURRENT } from './graph-transport.js';
import { SendSlots } from './send-slots.js';
import { activeTransport, poolSizeOf, ratePerMinuteOf } from './server-rules.js';
import { createSmtpTransport } from './smtp-transport.js';

export interface GraphOptions {
  /** Graph's base URL now (it follows the Outlook cloud or the microsoft_outlook.graph_endpoint parameter). */
  endpoint: () => Promise<string>;
  timeoutMs?: number;
}

export function smtpEndpoint(server: OutgoingServer): SmtpEndpoint {
  return { serverId: server.id, name: server.name, host: server.host, port: server.port, security: server.security, allowSelfSigned: server.allow_self_signed === 1 };
}

/** Credentials for the SMTP library: the decrypted password, or the OAuth user with a token source. */
export function smtpCredentials(
  server: OutgoingServer,
  password: (server: OutgoingServer) => string | null,
  tokens: TokenProvider | undefined,
): { credentials: SmtpCredentials; tokenSource?: AccessTokenSource } {
  if (server.auth === 'password') {
    const pass = password(server);
    if (!server.username || pass === null) {
      throw new AppError('JUNIPER_ERR_SERVER_CREDENTIALS', `Outgoing server "${server.name}" (id ${server.id}) uses password authentication but has no username or password: set them on the server.`);
    }
    return { credentials: { kind: 'password', user: server.username, pass } };
  }
  if (server.auth === 'outlook') {
    if (!server.username) throw new AppError('JUNIPER_ERR_SERVER_CREDENTIALS', `Outlook server "${server.name}" (id ${server.id}) has no username: set the mailbox address.`);
    if (!tokens) {
      throw new AppError('JUNIPER_ERR_OUTLOOK_NOT_CONNECTED', `Outgoing server "${server.name}" (id ${server.id}) has no Outlook token: click Connect your Outlook account.`);
    }
    return {
      credentials: { kind: 'oauth2', user: server.username },
      tokenSource: (renew) => tokens.accessToken('outgoing', server.id, { renew }),
    };
  }
  return { credentials: { kind: 'none' } };
}

/**
 * Mails built per connection: the one being written and the next, waiting in nodemailer's pool so that the
 * connection takes it the moment it is free. With one, each connection idled while the next mail was built and
 * handed over, on every mail. A large attachment is read only as it is written (BlobStore.source), so the mail
 * waiting holds no more than its small parts.
 */
export const SLOTS_PER_CONNECTION = 2;

/** Sends the server's transport runs at once: its pool's connections, or Graph's requests (at most Outlook's 4). */
export function concurrencyOf(server: OutgoingServer): number {
  const pool = poolSizeOf(server);
  return activeTransport(server) === 'graph' ? Math.max(1, Math.min(pool, GRAPH_MAX_CONCURRENT)) : pool;
}

/** A transport that knows its sends under way, so that a replaced one can be closed once they are done. */
interface Counted extends MailTransport {
  inFlight: number;
  retired: boolean;
}

function counted(inner: MailTransport): Counted {
  const t: Counted = {
    inFlight: 0,
    retired: false,
    async send(message, envelope, options) {
      t.inFlight++;
      try {
        return await inner.send(message, envelope, options);
      } finally {
        t.inFlight--;
        if (t.retired && t.inFlight === 0) inner.close();
      }
    },
    close: () => inner.close(),
  };
  return t;
}

/**
 * A pool replaced by a new one (the server's address or settings changed) takes no new mail and is closed once
 * the mails handed to it are done: closed at once, nodemailer failed every mail still waiting in it ("Connection
 * pool was closed"), each an attempt wasted.
 */
function retire(transport: MailTransport): void {
  const t = transport as Partial<Counted>;
  if (t.inFlight === undefined || t.inFlight === 0) transport.close();
  else t.retired = true;
}

export class TransportPool {
  /** Per server, its SMTP pool and its Graph transport apart: sends still under way on the pool when the server
   * moves to Graph must end on it, so building the Graph transport does not close the pool. */
  private readonly transports = new Map<`${number}:${'smtp' | 'graph'}`, { stamp: number; address: string | null | undefined; transport: MailTransport }>();
  /** Per server, the earliest time the next mail may start (its rate limit, in this process). */
  private readonly nextSlot = new Map<number, number>();
  /** Per server, until when the provider asked this process to send nothing (Graph's 429 Retry-After). */
  private readonly pausedUntil = new Map<number, number>();
  /** Per server, the mails being built and sent now (send-slots.ts). */
  private readonly slots = new SendSlots();

  constructor(
    private readonly password: (server: OutgoingServer) => string | null,
    private readonly tokens: TokenProvider | undefined,
    private readonly guard: HostGuard,
    private readonly create: typeof createSmtpTransport = createSmtpTransport,
    private readonly graph?: GraphOptions,
  ) {}

  /**
   * The server's transport. A server of a user other than an admin is checked against the address policy
   * before every send, and its pool connects to the address that was checked (rebuilt when it changes), so
   * neither a changed DNS answer nor a changed allow-list is acted on late.
   */
  get(server: OutgoingServer): MailTransport {
    return {
      send: async (message, envelope, options) => (await this.transportFor(server)).send(message, envelope, options),
      close: () => {
        this.transports.get(`${server.id}:smtp`)?.transport.close();
        this.transports.get(`${server.id}:graph`)?.transport.close();
      },
    };
  }

  /**
   * Waits until the server has room in this process for another mail to be built and sent, and resolves with
   * the function that gives the room back. The dispatcher takes it before it reads the mail's attachments and
   * gives it back when the send has settled, so that at most SLOTS_PER_CONNECTION mails per connection (Graph:
   * per concurrent request) hold their bytes at once, instead of every mail claimed.
   */
  sendSlot(server: OutgoingServer, signal?: AbortSignal): Promise<() => void> {
    return this.slots.acquire(server.id, SLOTS_PER_CONNECTION * concurrencyOf(server), signal);
  }

  /** The server's sends holding a slot and mails waiting for one, in this process. */
  slotUsage(serverId: number): { running: number; waiting: number } {
    return this.slots.usage(serverId);
  }

  /**
   * When the server's next mail may start under its rate limit (`now` when it has none or the slot is free).
   * A slot within `reserveWithinMs` is taken (the caller waits for it); a later one is only reported, and
   * the caller puts the mail back in the queue until then. Slots are spaced evenly (60 s / rate), so a
   * paced server sends steadily instead of in bursts that the provider would throttle.
   */
  reserveSlot(server: OutgoingServer, now: number, reserveWithinMs = Infinity): number {
    const rate = ratePerMinuteOf(server);
    const paused = this.pausedUntil.get(server.id) ?? 0;
    if (rate <= 0) return Math.max(now, paused);
    const slot = Math.max(now, paused, this.nextSlot.get(server.id) ?? now);
    if (slot - now <= reserveWithinMs) this.nextSlot.set(server.id, slot + 60_000 / rate);
    return slot;
  }

  /**
   * The provider throttled the server (429 with Retry-After): no mail of it starts before `until`, so the mails
   * behind the throttled one go back to the queue (no attempt counted) instead of each meeting the same 429.
   */
  pause(serverId: number, until: number): void {
    if (until > (this.pausedUntil.get(serverId) ?? 0)) this.pausedUntil.set(serverId, until);
  }

  /** Until when the server is paused, if it is at `now`. */
  pausedAt(serverId: number, now: number): number | undefined {
    const until = this.pausedUntil.get(serverId);
    return until !== undefined && until > now ? until : undefined;
  }

  private async transportFor(server: OutgoingServer): Promise<MailTransport> {
    if (activeTransport(server) === 'graph') return this.graphTransportFor(server);
    const inUse = this.transports.get(`${server.id}:smtp`)?.address ?? undefined;
    const target = await this.guard.connectTarget(server, `outgoing mail server "${server.name}" (id ${server.id})`, inUse);
    // Read after the await: a concurrent send may have built the same transport meanwhile.
    const cached = this.transports.get(`${server.id}:smtp`);
    if (cached && cached.stamp === server.updated_at && cached.address === target?.address) return cached.transport;
    if (cached) retire(cached.transport);
    const { credentials, tokenSource } = smtpCredentials(server, this.password, this.tokens);
    const transport = counted(this.create(smtpEndpoint(server), credentials, tokenSource, { maxConnections: poolSizeOf(server), ...(target ? { target } : {}) }));
    this.transports.set(`${server.id}:smtp`, { stamp: server.updated_at, address: target?.address, transport });
    return transport;
  }

  // Graph's endpoint is a system parameter only admins set, not the server's host: the address policy for
  // users' servers has nothing to check here.
  private graphTransportFor(server: OutgoingServer): MailTransport {
    // A reconnect changes the account (whose /me Graph sends from) without touching the server row.
    const cached = this.transports.get(`${server.id}:graph`);
    if (cached && cached.stamp === server.updated_at && cached.address === (server.token_account ?? null)) return cached.transport;
    cached?.transport.close();
    const tokens = this.tokens;
    if (!tokens || !this.graph || !server.username) {
      throw new AppError('JUNIPER_ERR_OUTLOOK_NOT_CONNECTED', `Outgoing server "${server.name}" (id ${server.id}) sends through Microsoft Graph but has no Outlook connection: click Connect your Outlook account.`);
    }
    const transport = createGraphTransport(
      // /me is the connected account, which may differ from the username (an account with Send As rights).
      { mailbox: server.token_account ?? server.username, baseUrl: this.graph.endpoint },
      (renew) => tokens.accessToken('outgoing', server.id, { renew, resource: 'graph' }),
      { maxConcurrent: concurrencyOf(server), ...(this.graph.timeoutMs ? { timeoutMs: this.graph.timeoutMs } : {}) },
    );
    this.transports.set(`${server.id}:graph`, { stamp: server.updated_at, address: server.token_account ?? null, transport });
    return transport;
  }

  closeAll(): void {
    for (const { transport } of this.transports.values()) transport.close();
    this.transports.clear();
  }
}
