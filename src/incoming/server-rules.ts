// What an incoming (IMAP) mail server may look like, as rules next to the model: field formats, the Outlook
// preset (outlook.office365.com:993, TLS required, mailbox as username, no password), ports that fit the
// chosen security, and folder names that can go into an IMAP command.
import { z } from 'zod';
import { AppError } from '../lib/errors.js';
import { isHost, securitySchema } from '../outgoing/server-rules.js';
import { got, toEmailAddress } from '../settings/parameter-rules.js';
import { CONTROL_CHARACTERS_REFUSED, hasControlCharacters } from '../lib/plain-text.js';

export const OUTLOOK_IMAP_PRESET = { host: 'outlook.office365.com', port: 993, security: 'ssl' } as const;

type Security = 'none' | 'starttls' | 'ssl';
type Auth = 'password' | 'outlook';

const hostSchema = z
  .string()
  .trim()
  .refine(isHost, { message: 'must be a host name or IP address such as outlook.office365.com (without imap:// and without a port)' });

// eslint-disable-next-line no-control-regex -- a folder name goes into an IMAP command line: no control characters
const FOLDER = /^[^\x00-\x1f\x7f]{1,255}$/;

export const incomingAuthSchema = z.enum(['password', 'outlook']);

export const incomingServerFields = {
  name: z.string().trim().min(1, 'give the server a name').max(100).refine((s) => !hasControlCharacters(s), CONTROL_CHARACTERS_REFUSED),
  protocol: z.literal('imap', { message: "only 'imap' is supported" }),
  host: hostSchema,
  port: z.number().int().min(1).max(65535, 'must be a port number from 1 to 65535'),
  security: securitySchema,
  auth: incomingAuthSchema,
  username: z.string().trim().max(320).nullable(),
  password: z.string().max(1024).nullable(),
  folder: z.string().trim().regex(FOLDER, 'must be a folder name such as INBOX or INBOX/Orders (no line breaks)'),
  keepOriginal: z.boolean(),
  keepAttachments: z.boolean(),
  priority: z.number().int().min(0).max(10_000),
  intervalMinutes: z.number().int().min(1, 'fetch at most once a minute').max(1440, 'fetch at least once a day'),
  active: z.boolean(),
  allowSelfSigned: z.boolean(),
  ownerUserId: z.number().int().positive().nullable(),
};

export const createIncomingServerSchema = z
  .object({
    ...incomingServerFields,
    protocol: incomingServerFields.protocol.default('imap'),
    host: hostSchema.optional(),
    port: incomingServerFields.port.optional(),
    security: securitySchema.optional(),
    auth: incomingAuthSchema.default('password'),
    username: incomingServerFields.username.optional(),
    password: incomingServerFields.password.optional(),
    folder: incomingServerFields.folder.default('INBOX'),
    keepOriginal: incomingServerFields.keepOriginal.default(false),
    keepAttachments: incomingServerFields.keepAttachments.default(true),
    priority: incomingServerFields.priority.default(10),
    intervalMinutes: incomingServerFields.intervalMinutes.default(5),
    active: incomingServerFields.active.default(true),
    allowSelfSigned: incomingServerFields.allowSelfSigned.default(false),
    ownerUserId: incomingServerFields.ownerUserId.optional(),
  })
  .strict();

export const patchIncomingServerSchema = z.object(incomingServerFields).partial().strict();

export type CreateIncomingServer = z.output<typeof createIncomingServerSchema>;
export type PatchIncomingServer = z.output<typeof patchIncomingServerSchema>;

const fail = (message: string, field: string) => new AppError('JUNIPER_ERR_VALIDATION', message, { details: { field } });

export interface IncomingCredentials {
  auth: Auth;
  username: string | null;
  /** undefined = keep the stored one; null = none. */
  password: string | null | undefined;
  hasStoredPassword: boolean;
}

/**
 * Outlook: the mailbox address is the username, the password stays empty (OAuth replaces it). Password: a
 * username and a password are required (a stored one counts).
 */
export function applyIncomingAuthRules(c: IncomingCredentials): IncomingCredentials {
  const out = { ...c };
  if (out.auth === 'outlook') {
    if (!out.username) throw fail('An Outlook server needs the Microsoft 365 mailbox as username (e.g. orders@example.com).', 'username');
    const mailbox = toEmailAddress(out.username);
    if (!mailbox) throw fail(`The Outlook username must be the mailbox's email address ${got(out.username)}.`, 'username');
    out.username = mailbox;
    if (out.password) throw fail('Leave the password empty for an Outlook server: it signs in with OAuth (Connect your Outlook account).', 'password');
    out.password = null;
    return out;
  }
  if (!out.username) throw fail('Password authentication needs a username (usually the full email address).', 'username');
  const keepsStored = out.password === undefined && c.hasStoredPassword;
  if (!out.password && !keepsStored) throw fail('Password authentication needs a password.', 'password');
  return out;
}

export function defaultImapPort(security: Security): number {
  return security === 'ssl' ? 993 : 143;
}

/** Host, port and security for a new server: the Outlook preset, or what follows from what was given. */
export function incomingConnectionDefaults(auth: Auth, given: { host?: string; port?: number; security?: Security }): { host: string; port: number; security: Security } {
  if (auth === 'outlook') {
    return { host: given.host ?? OUTLOOK_IMAP_PRESET.host, port: given.port ?? OUTLOOK_IMAP_PRESET.port, security: given.security ?? OUTLOOK_IMAP_PRESET.security };
  }
  if (!given.host) throw fail('host is required (e.g. imap.example.com).', 'host');
  const security = given.security ?? (given.port === 143 ? 'starttls' : 'ssl');
  return { host: given.host, port: given.port ?? defaultImapPort(security), security };
}

/** Throws with a hint for the combinations that cannot work: OAuth without TLS, SSL on 143, STARTTLS on 993. */
export function checkIncomingConnection(auth: Auth, port: number, security: Security): void {
  if (auth === 'outlook' && security === 'none') {
    throw fail('An Outlook server needs an encrypted connection: choose SSL/TLS (port 993) or STARTTLS (port 143).', 'security');
  }
  if (security === 'ssl' && port === 143) throw fail('Port 143 speaks STARTTLS, not SSL/TLS from the first byte: choose security starttls (or port 993 for SSL).', 'security');
  if (security === 'starttls' && port === 993) throw fail('Port 993 expects SSL/TLS from the first byte: choose security ssl (or port 143 for STARTTLS).', 'security');
}
