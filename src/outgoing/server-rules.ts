// What an outgoing mail server may look like, as rules next to the model (as Odoo keeps provider rules
// next to its mail server): field formats, the Outlook preset, and the From filter's parts.
import net from 'node:net';
import { z } from 'zod';
import { AppError } from '../lib/errors.js';
import { got, toDomainName, toEmailAddress } from '../settings/parameter-rules.js';
import { CONTROL_CHARACTERS_REFUSED, hasControlCharacters } from '../lib/plain-text.js';

export const OUTLOOK_SMTP_PRESET = { host: 'smtp.office365.com', port: 587, security: 'starttls' } as const;

export const MAX_POOL_SIZE = 50;

/**
 * Microsoft's published limit for SMTP client submission: 30 messages a minute per mailbox. Sending faster
 * only earns 4.3.2 throttling replies, so an Outlook server is paced to it unless its admin says otherwise.
 */
export const OUTLOOK_RATE_PER_MINUTE = 30;

/**
 * Connections a server's pool keeps: its own setting, else 2 for Outlook (paced to 30 a minute, more gain
 * nothing and Microsoft limits concurrent connections per mailbox) and nodemailer's default of 5 for others.
 */
export function poolSizeOf(server: { auth: string; pool_size: number | null }): number {
  return server.pool_size ?? (server.auth === 'outlook' ? 2 : 5);
}

/** Mails a minute the server may send; 0 = no limit. */
export function ratePerMinuteOf(server: { auth: string; rate_per_minute: number | null }): number {
  return server.rate_per_minute ?? (server.auth === 'outlook' ? OUTLOOK_RATE_PER_MINUTE : 0);
}

const HOSTNAME = /^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?$/i;

export function isHost(value: string): boolean {
  return net.isIP(value.replace(/^\[|\]$/g, '')) !== 0 || HOSTNAME.test(value);
}

/** Parts of a From filter, as stored: trimmed, lower-cased, each an email address or a domain. */
export function normaliseFromFilter(value: string | null | undefined): string | null {
  if (value === null || value === undefined) return null;
  const parts = value
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  const out = parts.map((part) => {
    const normalised = part.includes('@') ? toEmailAddress(part) : toDomainName(part);
    if (!normalised) {
      throw new AppError('JUNIPER_ERR_VALIDATION', `From filter part ${JSON.stringify(part)} is neither an email address (jane@example.com) nor a domain (example.com).`, {
        details: { field: 'fromFilter' },
      });
    }
    return normalised;
  });
  return out.length ? out.join(', ') : null;
}

const hostSchema = z
  .string()
  .trim()
  .refine(isHost, { message: 'must be a host name or IP address such as smtp.office365.com (without smtp:// and without a port)' });

export const securitySchema = z.enum(['starttls', 'ssl', 'none']);
export const transportSchema = z.enum(['smtp', 'graph', 'auto']);
export type Transport = z.infer<typeof transportSchema>;
export const outgoingAuthSchema = z.enum(['none', 'password', 'outlook']);

/** The fields a client may send; server-computed fields are refused so a GET-edit-PUT mistake is visible. */
export const outgoingServerFields = {
  name: z.string().trim().min(1, 'give the server a name').max(100).refine((s) => !hasControlCharacters(s), CONTROL_CHARACTERS_REFUSED),
  host: hostSchema,
  port: z.number().int().min(1).max(65535, 'must be a port number from 1 to 65535'),
  security: securitySchema,
  auth: outgoingAuthSchema,
  username: z.string().trim().max(320).nullable(),
  password: z.string().max(1024).nullable(),
  fromFilter: z.string().max(2000).nullable(),
  priority: z.number().int().min(0).max(10_000),
  active: z.boolean(),
  allowSelfSigned: z.boolean(),
  ownerUserId: z.number().int().positive().nullable(),
  /** null = the default for the server's kind (poolSizeOf). */
  poolSize: z.number().int().min(1).max(MAX_POOL_SIZE, `must be from 1 to ${MAX_POOL_SIZE} connections`).nullable(),
  /** Mails a minute at most; 0 = no limit; null = the default for the server's kind (ratePerMinuteOf). */
  ratePerMinute: z.number().int().min(0).max(100_000, 'must be from 0 (no limit) to 100000 mails a minute').nullable(),
  /** Outlook only: smtp, graph, or auto (SMTP until Microsoft refuses SMTP AUTH, then Graph). */
  transport: transportSchema,
  /**
   * Graph keeps a copy in Sent Items of every MIME message, and Juniper sends MIME so that a mail is byte for byte
   * what SMTP would send (Graph's JSON form, which could skip the copy, drops In-Reply-To, References and other
   * headers). So the field only reads true; false is refused with the reason rather than stored and ignored.
   */
  saveToSentItems: z.boolean().refine((v) => v, {
    message: 'cannot be turned off: Microsoft Graph keeps a copy in Sent Items of every message sent as MIME, which Juniper does so that a mail is exactly what SMTP would send. Use transport smtp to keep no copy.',
  }),
};

export const createOutgoingServerSchema = z
  .object({
    ...outgoingServerFields,
    host: hostSchema.optional(),
    port: outgoingServerFields.port.optional(),
    security: securitySchema.optional(),
    auth: outgoingAuthSchema.default('password'),
    username: outgoingServerFields.username.optional(),
    password: outgoingServerFields.password.optional(),
    fromFilter: outgoingServerFields.fromFilter.optional(),
    priority: outgoingServerFields.priority.default(10),
    active: outgoingServerFields.active.default(true),
    allowSelfSigned: outgoingServerFields.allowSelfSigned.default(false),
    ownerUserId: outgoingServerFields.ownerUserId.optional(),
    poolSize: outgoingServerFields.poolSize.optional(),
    ratePerMinute: outgoingServerFields.ratePerMinute.optional(),
    transport: transportSchema.optional(),
    saveToSentItems: outgoingServerFields.saveToSentItems.optional(),
  })
  .strict();

export const patchOutgoingServerSchema = z.object(outgoingServerFields).partial().strict();

export type CreateOutgoingServer = z.output<typeof createOutgoingServerSchema>;
export type PatchOutgoingServer = z.output<typeof patchOutgoingServerSchema>;

/**
 * The transport a server is stored with. Graph needs the Outlook connection, so other servers send by SMTP;
 * an Outlook server keeps what it was given, else what it had, else (new, or newly Outlook) auto.
 */
export function transportFor(auth: string, given: Transport | undefined, current: { auth: string; transport: Transport } | null): Transport {
  if (auth !== 'outlook') {
    if (given && given !== 'smtp') {
      throw new AppError('JUNIPER_ERR_VALIDATION', `Transport ${given} sends through Microsoft Graph with the Outlook connection: choose Outlook authentication, or transport smtp.`, { details: { field: 'transport' } });
    }
    return 'smtp';
  }
  return given ?? (current?.auth === 'outlook' ? current.transport : 'auto');
}

/** How the server sends now: an auto server uses Graph once Microsoft refused SMTP AUTH (transport_switched_at). */
export function activeTransport(server: { transport: Transport; transport_switched_at: number | null }): 'smtp' | 'graph' {
  if (server.transport === 'auto') return server.transport_switched_at === null ? 'smtp' : 'graph';
  return server.transport;
}

/** The credential fields of a server after a create or patch, before it is stored. */
export interface CredentialDraft {
  auth: 'none' | 'password' | 'outlook';
  username: string | null;
  /** undefined = keep the stored one; null = none. */
  password: string | null | undefined;
  hasStoredPassword: boolean;
  fromFilter: string | null;
  /** Whether the request named the From filter (an Outlook server defaults it to the mailbox otherwise). */
  fromFilterGiven: boolean;
}

/**
 * Auth-specific rules. Outlook: a username (the mailbox address) is required, the password must be empty
 * (OAuth replaces it), and the From filter defaults to the mailbox. Password: a username and a password are
 * required. None: no credentials are kept.
 */
export function applyAuthRules(d: CredentialDraft): CredentialDraft {
  const out = { ...d };
  const fail = (message: string, field: string) => new AppError('JUNIPER_ERR_VALIDATION', message, { details: { field } });
  if (out.auth === 'outlook') {
    if (!out.username) throw fail('An Outlook server needs the Microsoft 365 mailbox as username (e.g. notifications@example.com).', 'username');
    const mailbox = toEmailAddress(out.username);
    if (!mailbox) throw fail(`The Outlook username must be the mailbox's email address ${got(out.username)}.`, 'username');
    out.username = mailbox;
    if (out.password) throw fail('Leave the password empty for an Outlook server: it signs in with OAuth (Connect your Outlook account).', 'password');
    out.password = null;
    if (!out.fromFilterGiven && !out.fromFilter) out.fromFilter = mailbox;
  } else if (out.auth === 'password') {
    if (!out.username) throw fail('Password authentication needs a username.', 'username');
    const keepsStored = out.password === undefined && d.hasStoredPassword;
    if (!out.password && !keepsStored) throw fail('Password authentication needs a password.', 'password');
  } else {
    out.username = null;
    out.password = null;
  }
  return out;
}

/** Host, port and security for a new server: the Outlook preset, or defaults derived from what was given. */
export function connectionDefaults(
  auth: 'none' | 'password' | 'outlook',
  given: { host?: string; port?: number; security?: 'none' | 'starttls' | 'ssl' },
): { host: string; port: number; security: 'none' | 'starttls' | 'ssl' } {
  if (auth === 'outlook') {
    return { host: given.host ?? OUTLOOK_SMTP_PRESET.host, port: given.port ?? OUTLOOK_SMTP_PRESET.port, security: given.security ?? OUTLOOK_SMTP_PRESET.security };
  }
  if (!given.host) throw new AppError('JUNIPER_ERR_VALIDATION', 'host is required (e.g. smtp.example.com).', { details: { field: 'host' } });
  const security = given.security ?? (given.port === 465 ? 'ssl' : given.port === 25 ? 'none' : 'starttls');
  return { host: given.host, port: given.port ?? defaultPortFor(security), security };
}

export function defaultPortFor(security: 'none' | 'starttls' | 'ssl'): number {
  return security === 'ssl' ? 465 : security === 'starttls' ? 587 : 25;
}

/** Throws with a hint when the port and security are a known mismatch (SSL on 587, STARTTLS on 465). */
export function checkPortSecurity(port: number, security: 'none' | 'starttls' | 'ssl'): void {
  if (security === 'ssl' && port === 587) {
    throw new AppError('JUNIPER_ERR_VALIDATION', 'Port 587 speaks STARTTLS, not SSL/TLS from the first byte: choose security starttls (or port 465 for SSL).', { details: { field: 'security' } });
  }
  if (security === 'starttls' && port === 465) {
    throw new AppError('JUNIPER_ERR_VALIDATION', 'Port 465 expects SSL/TLS from the first byte: choose security ssl (or port 587 for STARTTLS).', { details: { field: 'security' } });
  }
}
