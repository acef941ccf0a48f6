// Sign-in and first-run setup have no session yet, so no CSRF token: a page on another site could sign a
// victim into the attacker's account ("login CSRF") and, say, let them connect their mailbox to the
// attacker's server. Browsers tell where a form came from (Sec-Fetch-Site, Origin); refuse other sites.
import type { FastifyRequest } from 'fastify';
import { AppError } from '../lib/errors.js';

const SIGN_IN_REFUSAL = 'Signing in from another web site is refused: open Juniper itself and sign in there.';

/** Throws when the browser says the request comes from another site; requests without those headers pass. */
export function assertSameSite(request: FastifyRequest, baseUrl: string | undefined, refusal: () => AppError = () => new AppError('JUNIPER_ERR_FORBIDDEN', SIGN_IN_REFUSAL)): void {
  const refuse = refusal;
  if (request.headers['sec-fetch-site'] === 'cross-site') throw refuse();
  const origin = request.headers.origin;
  if (origin === undefined) return;
  if (origin === 'null') throw refuse();
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    throw refuse();
  }
  const allowed = new Set([request.headers.host]);
  // Behind a reverse proxy the Host header may be rewritten; the public address is web.base.url.
  if (baseUrl) allowed.add(new URL(baseUrl).host);
  if (!allowed.has(host)) throw refuse();
}
