// MailTransport over Microsoft Graph's sendMail (issue 13): for an Outlook mailbox whose tenant has SMTP AUTH
// turned off. The same message SMTP would send (mime.ts), base64 MIME as Graph asks
// (POST /v1.0/me/sendMail, Content-Type text/plain), with an access token for Graph's resource from the same
// Outlook connection (Entra ID issues one resource's token per request; the token store keeps both).
// Facts Graph documents and this follows:
// - 202 Accepted with no body is success; a sendMail cannot be asked whether it arrived, so a timed-out request
//   is retried and may, rarely, deliver twice (at least once, as SMTP's lost "250" does);
// - the request may be at most 4 MB, so about 3 MB of MIME once base64-encoded: a larger message is refused here,
//   before it is sent, with what to do;
// - at most 4 concurrent requests per mailbox (Outlook's service limit): more only earn 429s;
// - sending as another mailbox is /users/{address}/sendMail, allowed by delegated Mail.Send.Shared plus the
//   mailbox's Send As (or Full Access) right in Exchange.
import { parseMailbox } from '../lib/address.js';
import type { AccessTokenSource, Envelope, MailTransport, OutgoingMessage, SendResult } from './mail-transport.js';
import { GraphRequestError } from './graph-failure.js';
import { graphMime, headerAddresses } from './mime.js';
import { tokenUnavailable } from './smtp-transport.js';

/** Graph's documented ceiling for a sendMail request (the base64 body). */
export const GRAPH_MAX_REQUEST_BYTES = 4 * 1024 * 1024;
/** Outlook's limit of concurrent requests per mailbox. */
export const GRAPH_MAX_CONCURRENT = 4;
export const GRAPH_TIMEOUT_MS = 60_000;

export interface GraphEndpoint {
  /** The connected account (the connection's, else the server's username): whose /me the token is. */
  mailbox: string;
  /** Graph's base URL (https://graph.microsoft.com, per cloud or the microsoft_outlook.graph_endpoint parameter). */
  baseUrl: () => Promise<string>;
}

/** Retry-After in seconds or as an HTTP date, in milliseconds from now. */
export function retryAfterMs(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Graph's error body `{ error: { code, message } }`, read defensively. */
export async function graphError(response: Response): Promise<{ code?: string; message?: string }> {
  const text = await response.text().catch(() => '');
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    const code = typeof body.error?.code === 'string' ? body.error.code : undefined;
    const message = typeof body.error?.message === 'string' ? body.error.message : undefined;
    return { ...(code ? { code } : {}), ...(message ? { message } : {}) };
  } catch {
    return text ? { message: text.slice(0, 300) } : {};
  }
}

/** Who the message is sent as: its From address (of the raw message's own header when it is raw). */
function senderOf(message: OutgoingMessage): string | undefined {
  if (message.raw) return headerAddresses(message.raw, /^from$/i)[0];
  return parseMailbox(message.from)?.address.toLowerCase();
}

/** A Graph access token, or the token source's failure as JUNIPER_ERR_OAUTH_TOKEN_UNAVAILABLE (transient or not). */
export async function graphToken(tokenSource: AccessTokenSource, renew: boolean): Promise<string> {
  try {
    return (await tokenSource(renew)).accessToken;
  } catch (err) {
    throw tokenUnavailable(err);
  }
}

export function createGraphTransport(endpoint: GraphEndpoint, tokenSource: AccessTokenSource, options: { maxConcurrent?: number; timeoutMs?: number } = {}): MailTransport {
  const limit = Math.max(1, Math.min(options.maxConcurrent ?? GRAPH_MAX_CONCURRENT, GRAPH_MAX_CONCURRENT));
  const timeoutMs = options.timeoutMs ?? GRAPH_TIMEOUT_MS;
  let running = 0;
  const waiting: (() => void)[] = [];
  const acquire = async () => {
    while (running >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    running++;
  };
  const releaseSlot = () => {
    running--;
    waiting.shift()?.();
  };
  const mailbox = endpoint.mailbox.toLowerCase();

  async function post(url: string, body: string, accessToken: string, facts: { mailbox: string; sendAs?: string }): Promise<Response> {
    try {
      return await fetch(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'text/plain' },
        body,
        signal: AbortSignal.timeout(timeoutMs),
        redirect: 'error',
      });
    } catch (err) {
      const e = err as { name?: string; cause?: { code?: unknown } };
      const timedOut = e.name === 'TimeoutError' || e.name === 'AbortError';
      const network = typeof e.cause?.code === 'string' ? e.cause.code : undefined;
      throw new GraphRequestError(timedOut ? `Microsoft Graph did not answer within ${timeoutMs / 1000} s` : `Microsoft Graph could not be reached${network ? ` (${network})` : ''}`, { status: 0, ...facts, url, ...(timedOut ? { timedOut } : {}), ...(network ? { network } : {}) }, { cause: err });
    }
  }

  async function send(message: OutgoingMessage, envelope: Envelope): Promise<SendResult> {
    const mime = await graphMime(message, envelope);
    const body = mime.toString('base64');
    const base = (await endpoint.baseUrl()).replace(/\/+$/, '');
    const sender = senderOf(message);
    const sendAs = sender && sender !== mailbox ? sender : undefined;
    const url = sendAs ? `${base}/v1.0/users/${encodeURIComponent(sendAs)}/sendMail` : `${base}/v1.0/me/sendMail`;
    const facts = { mailbox, url, ...(sendAs ? { sendAs } : {}) };
    if (body.length > GRAPH_MAX_REQUEST_BYTES) {
      throw new GraphRequestError('message over Graph\'s request limit', { status: 0, code: 'JuniperMessageTooLarge', tooLarge: { bytes: mime.length }, ...facts });
    }
    let response = await post(url, body, await graphToken(tokenSource, false), facts);
    // A token refused before its expiry (revoked, or consent changed): one fresh token, one more try.
    if (response.status === 401) {
      await response.body?.cancel();
      response = await post(url, body, await graphToken(tokenSource, true), facts);
    }
    const requestId = response.headers.get('request-id') ?? undefined;
    if (response.status === 202 || response.status === 200) {
      await response.body?.cancel();
      return { accepted: envelope.to, rejected: [], response: `${response.status} Accepted by Microsoft Graph${requestId ? ` (request-id ${requestId})` : ''}` };
    }
    const { code, message: graphMessage } = await graphError(response);
    const wait = retryAfterMs(response.headers.get('retry-after'));
    throw new GraphRequestError(`Microsoft Graph answered ${response.status}${code ? ` ${code}` : ''}${graphMessage ? `: ${graphMessage}` : ''}`, {
      status: response.status,
      ...(code ? { code } : {}),
      ...(graphMessage ? { graphMessage } : {}),
      ...(wait !== undefined ? { retryAfterMs: wait } : {}),
      ...(requestId ? { requestId } : {}),
      ...facts,
    });
  }

  return {
    async send(message, envelope) {
      await acquire();
      try {
        return await send(message, envelope);
      } finally {
        releaseSlot();
      }
    },
    close() {
      // Nothing is kept open between requests (fetch's own keep-alive pool closes idle sockets itself).
    },
  };
}
