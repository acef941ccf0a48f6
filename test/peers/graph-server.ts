// An in-process HTTP server shaped like Microsoft Graph v1.0's mail sending, for tests of "send through Graph":
//   POST /v1.0/me/sendMail, POST /v1.0/users/{id | userPrincipalName}/sendMail
//        Content-Type text/plain: base64 of a MIME message (202, stored decoded); application/json:
//        {message, saveToSentItems} (202, stored as json). Paths are case-insensitive, as Graph's are.
//   GET  /v1.0/me  -> 200 the token's user (needs User.Read)
// Each Bearer token is checked at the identity server's /userinfo (signature, exp, revocation there); this peer
// then checks what Graph itself checks: the audience (a token issued to Exchange Online, aud
// https://outlook.office.com, is refused like a bad one), the delegated permission in `scp` (Mail.Send,
// User.Read), the mailbox of /users/{id} and the message's From (Send As), the 4 MB request limit and the MIME.
// Error bodies, status codes and messages are Graph's own, with their sources next to each; every answer
// carries `request-id` and `client-request-id` headers, and error bodies an innerError with them.
// Tests script failures with failNext (429 + Retry-After, 503, ...) and setHang (a Graph that never answers).
import crypto from 'node:crypto';
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { messageWaiters } from './message-waiters.js';
import { GRAPH_AUDIENCE } from './identity-protocol.js';

export interface GraphServerOptions {
  /** The identity server whose /userinfo checks Bearer tokens. */
  identityUrl: string;
  /** Listen port on 127.0.0.1 (default 0: the OS picks one). */
  port?: number;
}

/** One message Graph accepted (202). */
export interface GraphMessage {
  /** The token's user (its email claim): the mailbox that sent. */
  mailbox: string;
  /** The path as requested: '/v1.0/me/sendMail' or '/v1.0/users/x@y/sendMail'. */
  path: string;
  /** The {id} of /users/{id}/sendMail, URL-decoded and lower-cased; null for /me. */
  sendAs: string | null;
  /** The decoded MIME message; empty for a JSON sendMail. */
  raw: Buffer;
  /** Date.now() when it was accepted. */
  at: number;
  /** The parsed JSON body's `message` of a JSON sendMail (absent for MIME). */
  json?: unknown;
  /** A JSON sendMail's saveToSentItems (Graph also takes the strings "true"/"false"); undefined when not sent and for MIME. */
  saveToSentItems?: boolean | undefined;
}

/** A scripted answer: e.g. `{ status: 429, headers: { 'Retry-After': '2' }, body: graphError('ApplicationThrottled', '...') }`. */
export interface GraphReply {
  status: number;
  /** JSON-encoded; a Graph error body (`{error:{code,message}}`) gets its innerError (date, request-id) filled in. */
  body?: unknown;
  headers?: Record<string, string>;
}

/** One request, in arrival order, with the status it was answered (0: its client went away while held). */
export interface GraphRequestRecord {
  method: string;
  path: string;
  status: number;
  /** The `aud` of a token that passed /userinfo. */
  aud?: string | undefined;
}

export interface GraphServer {
  /** http://127.0.0.1:PORT, no trailing slash: the Graph endpoint to give Juniper (it appends /v1.0/...). */
  readonly url: string;
  /** Accepted messages, in order. */
  readonly messages: readonly GraphMessage[];
  readonly requests: readonly GraphRequestRecord[];
  /** Resolves once at least n messages were accepted; rejects after timeoutMs (default 5000). */
  waitFor(n: number, timeoutMs?: number): Promise<GraphMessage[]>;
  /** Answers the next sendMail requests with these replies, in order (then normally again); after the 401 checks. */
  failNext(...replies: GraphReply[]): void;
  /** Every sendMail request hangs unanswered until setHang(false) (client timeouts end them). */
  setHang(on: boolean): void;
  /** sendMail requests held by setHang(true) whose client is still waiting. */
  readonly heldRequests: number;
  /** Mailbox -> addresses it may send as via /users/{address}/sendMail or a From header (its own address always allowed). */
  grantSendAs(mailbox: string, address: string): void;
  stop(): Promise<void>;
}

/** Graph's request size limit: "The maximum request length supported is 4MB." (the base64 body, so ~3 MB of MIME). */
export const GRAPH_MAX_REQUEST_BYTES = 4 * 1024 * 1024;

/** A Graph error body; the server adds innerError {date, request-id, client-request-id} when it sends one. */
export function graphError(code: string, message: string): { error: { code: string; message: string } } {
  return { error: { code, message } };
}

// Graph's words, as it answers them (sources: learn.microsoft.com/graph/api/user-sendmail, /graph/errors,
// /graph/outlook-send-mail-from-other-user, and answers quoted in microsoftgraph/* GitHub issues).
const TOKEN_EMPTY = 'Access token is empty.';
const TOKEN_INVALID = 'Access token validation failure.';
const TOKEN_AUDIENCE = 'Access token validation failure. Invalid audience.';
const TOKEN_EXPIRED = 'Lifetime validation failed, the token is expired.';
const TOKEN_NO_DOTS =
  "IDX14100: JWT is not well formed, there are no dots (.).\nThe token needs to be in JWS or JWE Compact Serialization Format. (JWS): 'EncodedHeader.EndcodedPayload.EncodedSignature'. (JWE): 'EncodedProtectedHeader.EncodedEncryptedKey.EncodedInitializationVector.EncodedCiphertext.EncodedAuthenticationTag'.";
/** What Graph sends with a 401 (Graph's own app id is the client_id). */
const WWW_AUTHENTICATE = 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"';
const ACCESS_DENIED = graphError('ErrorAccessDenied', 'Access is denied. Check credentials and try again.');
const INSUFFICIENT_PRIVILEGES = graphError('Authorization_RequestDenied', 'Insufficient privileges to complete the operation.');
const SEND_AS_DENIED = graphError(
  'ErrorSendAsDenied',
  'The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account. Cannot submit message.',
);
const TOO_LARGE = graphError('BadRequest', 'The maximum request length supported is 4MB.');
const INVALID_BASE64 = graphError('ErrorMimeContentInvalidBase64String', 'Invalid base64 string for MIME content.');
const INVALID_MIME = graphError('ErrorMimeContentInvalid', 'The MIME content is invalid.');
const NO_RECIPIENTS = graphError('ErrorInvalidRecipients', "At least one recipient is not valid., A message can't be sent because it contains no recipients.");
const BAD_JSON = graphError('BadRequest', 'Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.');

/** Permissions that let a delegated token read /me (User.Read is the least privileged). */
const ME_SCOPES = ['user.read', 'user.readwrite', 'user.readbasic.all', 'user.read.all', 'user.readwrite.all', 'directory.read.all', 'directory.readwrite.all'];

type Route = { kind: 'sendMail'; sendAs: string | null } | { kind: 'me' } | { kind: 'unknown'; segment: string };

/** Graph routes case-insensitively; a GET of an action or an unknown name is "Resource not found for the segment". */
export function graphRoute(method: string, pathname: string): Route {
  const segments = pathname.split('/').filter(Boolean);
  const [version, first, second, third, ...rest] = segments;
  const unknown = (segment: string | undefined): Route => ({ kind: 'unknown', segment: segment ?? '' });
  if (version?.toLowerCase() !== 'v1.0') return unknown(version);
  if (first?.toLowerCase() === 'me') {
    if (second === undefined) return method === 'GET' ? { kind: 'me' } : unknown(first);
    if (second.toLowerCase() === 'sendmail' && third === undefined && method === 'POST') return { kind: 'sendMail', sendAs: null };
    return unknown(second);
  }
  if (first?.toLowerCase() === 'users' && second !== undefined) {
    if (third?.toLowerCase() === 'sendmail' && rest.length === 0 && method === 'POST') {
      try {
        return { kind: 'sendMail', sendAs: decodeURIComponent(second).toLowerCase() };
      } catch {
        return unknown(second);
      }
    }
    return unknown(third ?? second);
  }
  return unknown(first);
}

type Decoded = { ok: true; raw: Buffer } | { ok: false; body: ReturnType<typeof graphError> };

/**
 * The checks of a MIME sendMail body: base64 as .NET reads it (line breaks allowed, standard alphabet, padded),
 * then a header block (the first line must be a header field) naming at least one recipient (Graph takes the
 * recipients from To/Cc/Bcc: an SMTP envelope's Bcc must be a Bcc header here).
 */
export function decodeMimeBody(text: string): Decoded {
  const compact = text.replace(/[\r\n\t ]/g, '');
  if (compact.length === 0 || compact.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(compact)) return { ok: false, body: INVALID_BASE64 };
  const raw = Buffer.from(compact, 'base64');
  const headers = headerFields(raw.toString('latin1'));
  if (headers === undefined) return { ok: false, body: INVALID_MIME };
  const recipients = headers.filter((h) => ['to', 'cc', 'bcc'].includes(h.name) && h.value.includes('@'));
  return recipients.length > 0 ? { ok: true, raw } : { ok: false, body: NO_RECIPIENTS };
}

/** The unfolded header fields of a message, lower-cased names; undefined when it does not start with a header block. */
function headerFields(message: string): { name: string; value: string }[] | undefined {
  const end = message.search(/\r?\n\r?\n/);
  const lines = (end < 0 ? message : message.slice(0, end)).split(/\r?\n/);
  const fields: { name: string; value: string }[] = [];
  for (const line of lines) {
    const last = fields.at(-1);
    if (/^[ \t]/.test(line) && last) {
      last.value += ` ${line.trim()}`;
      continue;
    }
    const m = /^([!-9;-~]+):(.*)$/.exec(line);
    if (!m?.[1]) return undefined;
    fields.push({ name: m[1].toLowerCase(), value: (m[2] ?? '').trim() });
  }
  return fields.length > 0 ? fields : undefined;
}

/** A claim that should be a string, or ''. */
function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** The address of a From value: `Alice <a@x>` or `a@x`, lower-cased. */
function addressOf(value: string): string {
  const angle = /<([^>]*)>/.exec(value);
  return (angle?.[1] ?? value.split(',')[0] ?? '').trim().toLowerCase();
}

type TokenResult = { ok: true; claims: Record<string, unknown> } | { ok: false; message: string; aud?: string };

export async function startGraphServer(opts: GraphServerOptions): Promise<GraphServer> {
  const identityUrl = opts.identityUrl.replace(/\/$/, '');
  const messages: GraphMessage[] = [];
  const requests: GraphRequestRecord[] = [];
  const failures: GraphReply[] = [];
  const grants = new Map<string, Set<string>>();
  const waiting = messageWaiters(messages, 'graph server');
  const held: { gone: () => boolean; resume: () => void }[] = [];
  let hang = false;
  let stopped = false;

  /** Graph validates the token itself; here the identity server checks signature and lifetime, we the audience. */
  async function checkToken(authorization: string | undefined): Promise<TokenResult> {
    const token = /^bearer /i.test(authorization ?? '') ? (authorization ?? '').slice(7).trim() : '';
    if (!token) return { ok: false, message: TOKEN_EMPTY };
    if (!token.includes('.')) return { ok: false, message: TOKEN_NO_DOTS };
    const response = await fetch(`${identityUrl}/userinfo`, { headers: { authorization: `Bearer ${token}` } });
    const body = (await response.json()) as Record<string, unknown>;
    if (!response.ok) return { ok: false, message: body.error_description === 'token expired' ? TOKEN_EXPIRED : TOKEN_INVALID };
    if (body.aud !== GRAPH_AUDIENCE) return { ok: false, message: TOKEN_AUDIENCE, ...(typeof body.aud === 'string' ? { aud: body.aud } : {}) };
    return { ok: true, claims: body };
  }

  function maySendAs(mailbox: string, oid: string, address: string): boolean {
    const a = address.toLowerCase();
    return a === mailbox.toLowerCase() || a === oid.toLowerCase() || (grants.get(mailbox.toLowerCase())?.has(a) ?? false);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    const requestId = crypto.randomUUID();
    const clientHeader = req.headers['client-request-id'];
    const clientRequestId = typeof clientHeader === 'string' && clientHeader ? clientHeader : requestId;
    const record: GraphRequestRecord = { method, path, status: 0 };
    requests.push(record);

    const answer = (reply: GraphReply): void => {
      record.status = reply.status;
      const headers: Record<string, string> = { 'request-id': requestId, 'client-request-id': clientRequestId, 'cache-control': 'no-store', ...reply.headers };
      if (reply.body === undefined) {
        res.writeHead(reply.status, { ...headers, 'content-length': '0' });
        res.end();
        return;
      }
      const withInner = addInnerError(reply.body, requestId, clientRequestId);
      res.writeHead(reply.status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(withInner));
    };

    const route = graphRoute(method, path);
    const body = await readLimited(req, GRAPH_MAX_REQUEST_BYTES);
    if (route.kind === 'sendMail' && hang) {
      let closed = false;
      res.on('close', () => {
        closed = true;
      });
      const gone = () => closed || req.socket.destroyed;
      await new Promise<void>((resume) => held.push({ gone, resume }));
      if (gone() || stopped) {
        if (!res.writableEnded) res.destroy();
        return; // dropped unprocessed: status 0 stays in requests
      }
    }

    const token = await checkToken(req.headers.authorization);
    if (!token.ok) {
      record.aud = token.aud;
      answer({ status: 401, body: graphError('InvalidAuthenticationToken', token.message), headers: { 'www-authenticate': WWW_AUTHENTICATE } });
      return;
    }
    const claims = token.claims;
    record.aud = text(claims.aud);
    const scopes = new Set(text(claims.scp).toLowerCase().split(' ').filter(Boolean));
    const mailbox = text(claims.email) || text(claims.preferred_username);
    const oid = text(claims.oid);

    if (route.kind === 'unknown') {
      answer({ status: 400, body: graphError('BadRequest', `Resource not found for the segment '${route.segment}'.`) });
      return;
    }
    if (route.kind === 'me') {
      if (!ME_SCOPES.some((s) => scopes.has(s))) {
        answer({ status: 403, body: INSUFFICIENT_PRIVILEGES });
        return;
      }
      record.status = 200;
      res.writeHead(200, {
        'content-type': 'application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8',
        'request-id': requestId,
        'client-request-id': clientRequestId,
      });
      res.end(
        JSON.stringify({
          '@odata.context': `${url}/v1.0/$metadata#users/$entity`,
          businessPhones: [],
          displayName: typeof claims.name === 'string' ? claims.name : mailbox,
          givenName: null,
          jobTitle: null,
          mail: mailbox,
          mobilePhone: null,
          officeLocation: null,
          preferredLanguage: null,
          surname: null,
          userPrincipalName: text(claims.upn) || mailbox,
          id: oid,
        }),
      );
      return;
    }

    const failure = failures.shift();
    if (failure) {
      answer(failure);
      return;
    }
    // Mail.Send.Shared alone does not send from the user's own mailbox; Mail.Send does (delegated).
    if (!scopes.has('mail.send')) {
      answer({ status: 403, body: ACCESS_DENIED });
      return;
    }
    if (body.size > GRAPH_MAX_REQUEST_BYTES) {
      answer({ status: 413, body: TOO_LARGE });
      return;
    }
    if (route.sendAs !== null && !maySendAs(mailbox, oid, route.sendAs)) {
      answer({ status: 403, body: SEND_AS_DENIED });
      return;
    }

    const contentType = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
    const base = { mailbox, path, sendAs: route.sendAs, at: 0 };
    let message: GraphMessage;
    let from: string | undefined;
    if (contentType === 'text/plain') {
      const decoded = decodeMimeBody(body.bytes.toString('latin1'));
      if (!decoded.ok) {
        answer({ status: 400, body: decoded.body });
        return;
      }
      from = headerFields(decoded.raw.toString('latin1'))?.find((h) => h.name === 'from')?.value;
      message = { ...base, raw: decoded.raw };
    } else {
      // Graph reads anything else as JSON (a missing Content-Type too).
      const parsed = parseJsonSendMail(body.bytes.toString('utf8'));
      if ('error' in parsed) {
        answer({ status: 400, body: parsed });
        return;
      }
      from = parsed.from;
      message = { ...base, raw: Buffer.alloc(0), json: parsed.message, saveToSentItems: parsed.saveToSentItems };
    }
    // Exchange checks the From of the message too (Send As / Send on Behalf): the documented ErrorSendAsDenied case.
    if (from !== undefined && addressOf(from) !== '' && addressOf(from) !== route.sendAs && !maySendAs(mailbox, oid, addressOf(from))) {
      answer({ status: 403, body: SEND_AS_DENIED });
      return;
    }
    message.at = Date.now();
    messages.push(message);
    waiting.arrived();
    answer({ status: 202 });
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent || req.socket.destroyed) {
        res.destroy();
        return;
      }
      // A peer failure (identity server unreachable, ...), not a Graph answer: say so plainly.
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify(graphError('generalException', `graph server: ${String(err)}`)));
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('graph server: no TCP address');
  const url = `http://127.0.0.1:${address.port}`;

  return {
    url,
    messages,
    requests,
    waitFor: waiting.waitFor,
    failNext(...replies) {
      failures.push(...replies);
    },
    setHang(on) {
      hang = on;
      if (!on) for (const h of held.splice(0)) h.resume();
    },
    get heldRequests() {
      return held.filter((h) => !h.gone()).length;
    },
    grantSendAs(mailbox, sendAs) {
      const key = mailbox.toLowerCase();
      const set = grants.get(key) ?? new Set<string>();
      set.add(sendAs.toLowerCase());
      grants.set(key, set);
    },
    stop() {
      stopped = true;
      hang = false;
      for (const h of held.splice(0)) h.resume();
      return new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Keep-alive connections (fetch keeps them) would hold close() open until they time out.
        server.closeAllConnections();
      });
    },
  };
}

type JsonSendMail = { message: unknown; from: string | undefined; saveToSentItems: boolean | undefined } | ReturnType<typeof graphError>;

/** A JSON sendMail body: {message: {toRecipients, ccRecipients, bccRecipients, from, ...}, saveToSentItems}. */
function parseJsonSendMail(text: string): JsonSendMail {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return BAD_JSON;
  }
  if (parsed === null || typeof parsed !== 'object') return BAD_JSON;
  const { message, saveToSentItems } = parsed as { message?: unknown; saveToSentItems?: unknown };
  let save: boolean | undefined;
  if (typeof saveToSentItems === 'boolean') save = saveToSentItems;
  else if (typeof saveToSentItems === 'string' && /^(true|false)$/i.test(saveToSentItems)) save = saveToSentItems.toLowerCase() === 'true';
  else if (saveToSentItems !== undefined) return graphError('RequestBodyRead', `Cannot convert the literal '${JSON.stringify(saveToSentItems)}' to the expected type 'Edm.Boolean'.`);
  const m = (message !== null && typeof message === 'object' ? message : {}) as Record<string, unknown>;
  const hasRecipient = ['toRecipients', 'ccRecipients', 'bccRecipients'].some((k) => Array.isArray(m[k]) && m[k].length > 0);
  if (!hasRecipient) return NO_RECIPIENTS;
  const fromAddress = (m.from as { emailAddress?: { address?: unknown } } | undefined)?.emailAddress?.address;
  return { message, from: typeof fromAddress === 'string' ? fromAddress : undefined, saveToSentItems: save };
}

/** Graph error bodies always carry innerError {date, request-id, client-request-id}, matching the headers. */
function addInnerError(body: unknown, requestId: string, clientRequestId: string): unknown {
  if (body === null || typeof body !== 'object' || !('error' in body)) return body;
  const error = body.error;
  if (error === null || typeof error !== 'object' || 'innerError' in error) return body;
  const date = new Date().toISOString().slice(0, 19);
  return { ...body, error: { ...error, innerError: { date, 'request-id': requestId, 'client-request-id': clientRequestId } } };
}

/** Reads the whole body (so a client still sending gets the answer, not a reset) and keeps at most limit + 1 bytes. */
function readLimited(req: IncomingMessage, limit: number): Promise<{ bytes: Buffer; size: number }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      if (size <= limit) chunks.push(chunk);
      size += chunk.length;
    });
    req.on('end', () => resolve({ bytes: Buffer.concat(chunks), size }));
    req.on('error', reject);
  });
}
