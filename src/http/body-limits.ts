// How much of a request body Juniper reads. Fastify reads and parses a body before the route runs, so every
// byte a route accepts costs memory and event-loop time (JSON and form parsing block the one thread the UI, the
// API and, with `juniper serve`'s default, a workers thread's host share). Hence a small default and larger
// limits only on the routes where mail arrives. Who calls is known before any of it is read: authentication runs
// in onRequest (authenticate.ts), so a caller without credentials is refused before the body's first byte.
import querystring from 'node:querystring';
import type { FastifyRequest } from 'fastify';
import { AppError } from '../lib/errors.js';

const KB = 1024;
const MB = 1024 * 1024;

/** Every route without a limit of its own: settings, servers, users, webhooks all fit many times over. */
export const DEFAULT_BODY_LIMIT = 1 * MB;
/** Sign-in and first-run setup (page and API): a few short fields, and anyone may post them. */
export const SIGN_IN_BODY_LIMIT = 64 * KB;
/**
 * One mail with its attachments (POST /api/v1/mails as JSON, the compose form with base64 attachments in a field).
 * mail.message.max_bytes' default 25 MB measures the MIME message, whose attachments are already base64; as JSON
 * or a form field the same content is a few percent larger.
 */
export const MAIL_BODY_LIMIT = 30 * MB;
/** A batch of up to 1,000 mails is larger than one mail; each mail's own size limit still applies. */
export const BATCH_BODY_LIMIT = 64 * MB;
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
  const limit = request.routeOptions.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const route = request.routeOptions.url ? `${request.method} ${request.routeOptions.url}` : 'this address';
  const mail = limit >= MAIL_BODY_LIMIT ? ' Send large files as links, or in several mails.' : '';
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
