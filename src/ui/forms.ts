// What every admin page shares: reading classic form posts, the CSRF hidden field, one-shot flash messages
// carried across the POST → 303 → GET redirect, developer mode, and HTML error pages.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, errorCatalogue, isAppError } from '../lib/errors.js';
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

export function setFlash(reply: FastifyReply, flash: Flash): void {
  void reply.setCookie(FLASH_COOKIE, JSON.stringify(flash), { path: '/', httpOnly: true, sameSite: 'lax', secure: 'auto', maxAge: 60 });
}

/** Reads and clears the flash, so a reload does not repeat it. */
function takeFlash(request: FastifyRequest, reply: FastifyReply): Flash | null {
  const raw = request.cookies[FLASH_COOKIE];
  if (raw === undefined) return null;
  void reply.clearCookie(FLASH_COOKIE, { path: '/' });
  try {
    const v = JSON.parse(raw) as Partial<Flash>;
    return typeof v.text === 'string' && typeof v.kind === 'string' && FLASH_KINDS.has(v.kind) ? { kind: v.kind, text: v.text } : null;
  } catch {
    return null;
  }
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
      : err.statusCode && err.statusCode >= 400 && err.statusCode < 500
        ? new AppError('JUNIPER_ERR_VALIDATION', err.message)
        : new AppError('JUNIPER_ERR_INTERNAL', errorCatalogue.JUNIPER_ERR_INTERNAL.message, { cause: err });
    if (e.status >= 500) request.log.error({ err }, 'page failed');
    else request.log.info({ code: e.code, status: e.status }, e.message);
    const ctx: PageContext = { ...contextOf(request), developerMode: developerMode(request) };
    return sendPage(reply, errorPage(e, ctx), e.status);
  });
}
