// What every admin page shares: reading classic form posts, the CSRF hidden field, one-shot flash messages
// carried across the POST → 303 → GET redirect, developer mode, and HTML error pages.
import crypto from 'node:crypto';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, errorCatalogue, isAppError } from '../lib/errors.js';
import { bodyTooLarge, isBodyTooLarge } from '../http/body-limits.js';
import { contextOf, errorPage } from './error-page.js';
import { html, type SafeHtml } from './html.js';
import { page, type Flash, type NavItem, type PageContext } from './layout.js';

export { flashHtml, type Flash } from './layout.js';

/** A urlencoded body as @fastify/formbody parses it: a repeated name becomes an array. */
export type Form = Record<string, string | string[] | undefined>;

const FLASH_COOKIE = 'juniper_flash';
const DEBUG_COOKIE = 'juniper_debug';
const DEBUG_COOKIE_MAX_AGE = 365 * 86_400;
const FLASH_KINDS = new Set(['success', 'error', 'warning']);
// Per request rather than a Fastify request decorator: only page routes need it.
const developerModes = new WeakMap<FastifyRequest, boolean>();

/** The field's value ('' when absent); the first one when the name was repeated. */
export function text(form: Form | undefined, name: string): string {
  const v = form?.[name];
  return (Array.isArray(v) ? v[0] : v) ?? '';
}

/** A checkbox: browsers send it only when ticked. */
export function checked(form: Form | undefined, name: string): boolean {
  return text(form, name) !== '';
}

export function csrfField(ctx: PageContext): SafeHtml {
  return html`<input type="hidden" name="_csrf" value="${ctx.csrfToken ?? ''}">`;
}

/**
 * Flash messages wait here, not in the cookie: a click's answer can quote a mail server's or Microsoft's
 * long reply (a cookie over 4 KB is dropped silently, and would ride along on every request), and an
 * unsigned cookie's text could be planted. The cookie holds only a random id (not bound to the session:
 * "Password changed. Sign in with the new one." is read after that session ended); an entry lives one
 * minute. Process memory suffices: only `juniper serve` renders pages, and a restart between the POST and
 * its GET loses one message, nothing else.
 */
const FLASH_TTL_MS = 60_000;
const FLASH_MAX = 10_000;
const flashes = new Map<string, { flash: Flash; until: number }>();

function sweepFlashes(now: number): void {
  for (const [id, f] of flashes) {
    // Insertion order is expiry order: stop at the first one still alive, unless the store is full.
    if (f.until > now && flashes.size < FLASH_MAX) break;
    flashes.delete(id);
  }
}

export function setFlash(reply: FastifyReply, flash: Flash): void {
  const now = Date.now();
  sweepFlashes(now);
  const id = crypto.randomBytes(16).toString('base64url');
  flashes.set(id, { flash: { kind: flash.kind, text: flash.text }, until: now + FLASH_TTL_MS });
  void reply.setCookie(FLASH_COOKIE, id, { path: '/', httpOnly: true, sameSite: 'lax', secure: 'auto', maxAge: FLASH_TTL_MS / 1000 });
}

/** Reads and clears the flash, so a reload does not repeat it. */
function takeFlash(request: FastifyRequest, reply: FastifyReply): Flash | null {
  const id = request.cookies[FLASH_COOKIE];
  if (id === undefined) return null;
  void reply.clearCookie(FLASH_COOKIE, { path: '/' });
  const entry = flashes.get(id);
  if (!entry) return null;
  flashes.delete(id);
  if (entry.until <= Date.now() || !FLASH_KINDS.has(entry.flash.kind)) return null;
  return entry.flash;
}

export function developerMode(request: FastifyRequest): boolean {
  return developerModes.get(request) ?? false;
}

/** Everything the layout needs for a signed-in page; takes the pending flash message. */
export function pageContext(request: FastifyRequest, reply: FastifyReply, active?: NavItem): PageContext {
  const p = request.principal;
  return {
    user: p?.user ?? null,
    csrfToken: p?.session?.csrfToken ?? null,
    developerMode: developerMode(request),
    flash: takeFlash(request, reply),
    active,
  };
}

export function sendPage(reply: FastifyReply, body: string, status = 200): FastifyReply {
  return reply.status(status).header('content-type', 'text/html; charset=utf-8').header('cache-control', 'no-store').send(body);
}

export function renderPage(reply: FastifyReply, title: string, body: SafeHtml, ctx: PageContext, status = 200): FastifyReply {
  return sendPage(reply, page(title, body, ctx), status);
}

/** Redirect after a successful POST (303: the browser follows with GET, so a reload does not resubmit). */
export function redirectWithFlash(reply: FastifyReply, location: string, flash: Flash): FastifyReply {
  setFlash(reply, flash);
  return reply.redirect(location, 303);
}

/** A service error a form shows next to the entered values (4xx); anything else propagates to the error page. */
export function formError(e: unknown): AppError {
  if (isAppError(e) && e.status < 500) return e;
  throw e;
}

/**
 * Developer mode (`?debug=1` on any page, `?debug=0` to leave it) as in the procedure's "activating Developer
 * Mode (debug mode)"; and errors as HTML pages rather than the API's JSON, since a person is reading them.
 */
export function installPageHooks(app: FastifyInstance): void {
  app.addHook('onRequest', async (request, reply) => {
    const debug = (request.query as Record<string, unknown> | undefined)?.debug;
    let on = request.cookies[DEBUG_COOKIE] === '1';
    if (debug === '1') {
      on = true;
      // Kept for a year, not for the browser session: an admin who turned it on finds it on after a restart
      // (it is only a view of admin pages; the pages behind it still check the role on every request).
      void reply.setCookie(DEBUG_COOKIE, '1', { path: '/', httpOnly: true, sameSite: 'lax', secure: 'auto', maxAge: DEBUG_COOKIE_MAX_AGE });
    } else if (debug === '0') {
      on = false;
      void reply.clearCookie(DEBUG_COOKIE, { path: '/' });
    }
    developerModes.set(request, on);
  });

  app.setErrorHandler((err: FastifyError | AppError, request, reply) => {
    const e = isAppError(err)
      ? err
      : isBodyTooLarge(err)
        ? bodyTooLarge(request)
        : err.statusCode && err.statusCode >= 400 && err.statusCode < 500
        ? new AppError('JUNIPER_ERR_VALIDATION', err.message)
        : new AppError('JUNIPER_ERR_INTERNAL', errorCatalogue.JUNIPER_ERR_INTERNAL.message, { cause: err });
    if (e.status >= 500) request.log.error({ err }, 'page failed');
    else request.log.info({ code: e.code, status: e.status }, e.message);
    const ctx: PageContext = { ...contextOf(request), developerMode: developerMode(request) };
    return sendPage(reply, errorPage(e, ctx), e.status);
  });
}
