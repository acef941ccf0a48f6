// Opens a stored server's mailbox: its endpoint, its decrypted password or an OAuth access token, and for
// Outlook one retry with a renewed token when the server refuses the first (it may have been revoked or
// expired early; the token store cannot know until the server says so).
import type { IncomingServerRow } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import { HostLookupError, type HostGuard } from '../mail-servers/host-guard.js';
import type { TokenProvider } from '../oauth/token-provider.js';
import { ImapFailure } from './imap-errors.js';
import type { ConnectReader, ImapEndpoint, MailboxReader } from './mailbox-reader.js';

export interface ConnectDeps {
  password: (server: IncomingServerRow) => string | null;
  tokens: TokenProvider | undefined;
  connect: ConnectReader;
  /**
   * The incoming size cap, for the IMAP parser's limits (fetching passes it). Without it (Test & Confirm, which reads
   * no message) the parser accepts 1 MB literals and 2 MB responses (imap-reader.ts imapClientOptions).
   */
  maxMessageBytes?: number;
  /** The run's stop, for the connection (ConnectOptions.signal): a stop while connecting ends the connect. */
  signal?: AbortSignal;
}

export function imapEndpoint(server: IncomingServerRow): ImapEndpoint {
  return { serverId: server.id, name: server.name, host: server.host, port: server.port, security: server.security, allowSelfSigned: server.allow_self_signed === 1 };
}

/**
 * `servers.hostGuard` checks a server of a user other than an admin against the address policy on every
 * connection, and the socket goes to the address it checked.
 */
export async function connectServer(server: IncomingServerRow, deps: ConnectDeps & { servers: { hostGuard: HostGuard } }): Promise<MailboxReader> {
  let target;
  try {
    target = await deps.servers.hostGuard.connectTarget(server, `incoming mail server "${server.name}" (id ${server.id})`);
  } catch (err) {
    if (err instanceof HostLookupError) throw new ImapFailure('connect', `${err.message} Check the host name of incoming server "${server.name}" (id ${server.id}).`, { cause: err });
    throw err;
  }
  const endpoint: ImapEndpoint = {
    ...imapEndpoint(server),
    ...(target ? { connectAddress: target.address } : {}),
    ...(deps.maxMessageBytes ? { maxMessageBytes: deps.maxMessageBytes } : {}),
  };
  if (!server.username) {
    throw new AppError('JUNIPER_ERR_SERVER_CREDENTIALS', `Incoming server "${server.name}" (id ${server.id}) has no username: set the mailbox address.`);
  }
  const user = server.username;
  const options = deps.signal ? { signal: deps.signal } : {};
  if (server.auth === 'password') {
    const pass = deps.password(server);
    if (pass === null) throw new AppError('JUNIPER_ERR_SERVER_CREDENTIALS', `Incoming server "${server.name}" (id ${server.id}) uses password authentication but has no password: set it on the server.`);
    return deps.connect(endpoint, { kind: 'password', user, pass }, options);
  }
  const tokens = deps.tokens;
  if (!tokens) {
    throw new AppError('JUNIPER_ERR_OUTLOOK_NOT_CONNECTED', `Incoming server "${server.name}" (id ${server.id}) has no Outlook token: click Connect your Outlook account.`);
  }
  const login = async (renew: boolean) => deps.connect(endpoint, { kind: 'oauth2', user, accessToken: (await tokens.accessToken('incoming', server.id, { renew })).accessToken }, options);
  try {
    return await login(false);
  } catch (err) {
    if (!(err instanceof ImapFailure) || err.stage !== 'auth') throw err;
    return login(true);
  }
}
