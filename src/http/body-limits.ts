// How much of a request body Juniper reads. Fastify reads and parses a body before the route runs, so every
// byte a route accepts costs memory and event-loop time (JSON and form parsing block the one thread the UI, the
// API and, with `juniper serve`'s default, a workers thread's host share). Hence a small default and larger
// limits only on the routes where mail arrives. Who calls is known before any of it is read: authentication runs
// in onRequest (authenticate.ts), so a caller without credentials is refused before the body's first byte.
import querystring from 'node:querystring';
import { Transform } from 'node:stream';
import type { FastifyRequest, preParsingAsyncHookHandler } from 'fastify';
import { AppError } from '../lib/errors.js';
import type { Parameters } from '../settings/parameters.js';
import { MAX_MESSAGE_BYTES } from '../settings/parameter-rules.js';

const KB = 1024;
const MB = 1024 * 1024;

/** Every route without a limit of its own: settings, servers, users, webhooks all fit many times over. */
export const DEFAULT_BODY_LIMIT = 1 * MB;
/** Sign-in and first-run setup (page and API): a few short fields, and anyone may post them. */
export const SIGN_IN_BODY_LIMIT = 64 * KB;
/**
 * The body that carries one mail of at most `maxMessageBytes` (mail.message.max_bytes) with its attachments:
 * POST /api/v1/mails as JSON, the compose form with base64 attachments in a field. The parameter measures the
 * MIME message, whose attachments are already base64; as JSON or a form field the same content is a few percent
 * larger, and escaped text more. 31 MB for the default 25 MB. It follows the parameter: an admin who raises it
 * to Microsoft's 35 MB can post such mails, and one who lowers it has large bodies refused before they are read.
 */
export function mailBodyLimit(maxMessageBytes: number): number {
  return Math.ceil(Math.min(maxMessageBytes, MAX_MESSAGE_BYTES) * 1.2) + 1 * MB;
}
/** What Fastify itself lets through on the mail routes (the limit above at its largest); each request gets less. */
export const MAIL_BODY_LIMIT = mailBodyLimit(MAX_MESSAGE_BYTES);
/** What a refused mail's sender can do. */
const MAIL_TOO_LARGE_HINT = 'Send large files as links, or in several mails (an admin sets the largest mail: mail.message.max_bytes).';
/** What a refused batch's sender can do. */
const BATCH_TOO_LARGE_HINT = 'Send fewer mails per batch.';
/** A batch of up to 1,000 mails is larger than one mail (at least 64 MB); each mail's own size limit still applies. */
export const batchBodyLimit = (maxMessageBytes: number): number => Math.max(64 * MB, mailBodyLimit(maxMessageBytes));
export const BATCH_BODY_LIMIT = batchBodyLimit(MAX_MESSAGE_BYTES);

/** The limit a request was held to, when it was not its route's, and what to do about it (bodyTooLarge). */
const heldTo = new WeakMap<FastifyRequest, { limit: number; hint: string }>();

/**
 * A route's preParsing hook holding its body to `limitNow()` bytes, read per request (the parameters change
 * without a restart). A declared Content-Length over it is refused before a byte is read; a body without one is
 * counted as it arrives. The route's own bodyLimit stays the ceiling. `hint` ends the refusal's message.
 */
export function bodyLimitFrom(limitNow: () => Promise<number>, hint: string): preParsingAsyncHookHandler {
  return async (request, reply, payload) => {
    const limit = await limitNow();
    heldTo.set(request, { limit, hint });
    const declared = request.headers['content-length'];
    if (declared !== undefined) {
      if (Number(declared) > limit) throw bodyTooLarge(request);
      // Node's parser reads no more than the declared length; the body parser counts what arrives against it.
      return payload;
    }
    let received = 0;
    const counted = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        received += chunk.length;
        if (received > limit) done(bodyTooLarge(request));
        else done(null, chunk);
      },
    });
    // Until the body parser listens (it may not: an unsupported Content-Type is refused unread), an error here must
    // not be an unhandled one, and the rest of the body is discarded once the answer is out, so the connection
    // stays usable.
    counted.on('error', () => undefined);
    payload.on('error', (err) => counted.destroy(err));
    reply.raw.once('finish', () => {
      if (payload.readableEnded) return;
      payload.unpipe(counted);
      payload.resume();
    });
    return payload.pipe(counted);
  };
}
/**
 * The preParsing hooks of the routes where mail arrives, holding one mail (the API's and the Compose form's) and a
 * batch to mail.message.max_bytes as it is now; the routes' own bodyLimit (MAIL_BODY_LIMIT, BATCH_BODY_LIMIT) is
 * only the ceiling.
 */
export function mailBodyHooks(parameters: Pick<Parameters, 'snapshot'>): { oneMail: preParsingAsyncHookHandler; batch: preParsingAsyncHookHandler } {
  const maxMessageBytes = async () => (await parameters.snapshot()).maxMessageBytes;
  return {
    oneMail: bodyLimitFrom(async () => mailBodyLimit(await maxMessageBytes()), MAIL_TOO_LARGE_HINT),
    batch: bodyLimitFrom(async () => batchBodyLimit(await maxMessageBytes()), BATCH_TOO_LARGE_HINT),
  };
}

/** Juniper's largest form has fewer than 20 fields; a form of millions of keys was seconds of parsing. */
export const FORM_MAX_FIELDS = 200;

/** A size for a message: "64 KB", "1 MB", "30 MB". */
export function formatBytes(n: number): string {
  if (n >= MB) return `${Number.isInteger(n / MB) ? n / MB : (n / MB).toFixed(1)} MB`;
  if (n >= KB) return `${Math.round(n / KB)} KB`;
  return `${n} bytes`;
}

/** The refusal of a body over the route's limit (Fastify's FST_ERR_CTP_BODY_TOO_LARGE), naming the limit. */
export function bodyTooLarge(request: FastifyRequest): AppError {
  const held = heldTo.get(request);
  const limit = held?.limit ?? request.routeOptions.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const route = request.routeOptions.url ? `${request.method} ${request.routeOptions.url}` : 'this address';
  const mail = held ? ` ${held.hint}` : '';
  return new AppError('JUNIPER_ERR_TOO_LARGE', `The request body is larger than ${route} accepts (at most ${formatBytes(limit)}).${mail}`, {
    details: { limitBytes: limit },
  });
}

/** Fastify's own client errors that mean "too large". */
export function isBodyTooLarge(err: { code?: unknown; statusCode?: unknown }): boolean {
  return err.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || err.statusCode === 413;
}

/**
 * The urlencoded form parser: at most FORM_MAX_FIELDS fields, counted before anything is decoded (the body
 * limit bounds the bytes, not the keys: a 1 MB form of `k1=1&k2=1…` is 100,000 of them).
 */
export function parseForm(body: string): Record<string, string | string[]> {
  let fields = 1;
  for (let at = body.indexOf('&'); at !== -1; at = body.indexOf('&', at + 1)) {
    if (++fields > FORM_MAX_FIELDS) {
      throw new AppError('JUNIPER_ERR_TOO_LARGE', `The form has more than ${FORM_MAX_FIELDS} fields; Juniper's forms have far fewer. Reload the page and send it again.`, {
        details: { limitFields: FORM_MAX_FIELDS },
      });
    }
  }
  // node:querystring decodes like the browser encodes (+ as space, repeated names as an array) into an object
  // without a prototype; maxKeys 0 because the fields are counted above.
  return querystring.parse(body, '&', '=', { maxKeys: 0 }) as Record<string, string | string[]>;
}
