// The HTML error and not-found pages: a person's browser is reading, so every refusal says what failed and
// what to do on a page of the UI (with its menu), never as the API's raw JSON.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AppError } from '../lib/errors.js';
import { html, type SafeHtml } from './html.js';
import { page, type PageContext } from './layout.js';

const pageMessages: Partial<Record<AppError['code'], string>> = {
  JUNIPER_ERR_CSRF: 'This form did not carry a valid security token (it may come from an expired session or another site). Go back, reload the page and submit it again.',
  JUNIPER_ERR_UNAUTHENTICATED: 'Your session has ended. Sign in again.',
};

export function errorHeading(status: number): string {
  return status === 403 ? 'Not allowed' : status === 404 ? 'Not found' : status === 502 || status === 503 ? 'The other side refused' : status >= 500 ? 'Something went wrong' : 'Request refused';
}

/** A person (not a script) is asking: a browser's navigation accepts HTML, an API client does not. */
export function wantsHtml(request: FastifyRequest): boolean {
  const url = request.url;
  if (url.startsWith('/api/') || url === '/api') return false;
  return /text\/html/.test(String(request.headers.accept ?? ''));
}

export function errorPage(e: Pick<AppError, 'code' | 'message' | 'status'>, ctx: PageContext, opts: { heading?: string; back?: { href: string; label: string } } = {}): string {
  const heading = opts.heading ?? errorHeading(e.status);
  const back: SafeHtml = opts.back ? html`<a href="${opts.back.href}">${opts.back.label}</a> · ` : html``;
  const body = html`<div class="card narrow">
  <h1>${heading}</h1>
  <p class="flash flash-error" role="alert">${pageMessages[e.code] ?? e.message}</p>
  <p>${back}<a href="/">Back to the home page</a>${ctx.user ? null : html` · <a href="/login">Sign in</a>`}</p>
</div>`;
  return page(heading, body, ctx);
}

export function contextOf(request: FastifyRequest): PageContext {
  return { user: request.principal?.user ?? null, csrfToken: request.principal?.session?.csrfToken ?? null };
}

/** The not-found page for a browser; the caller answers scripts with JSON. */
export function sendNotFoundPage(request: FastifyRequest, reply: FastifyReply, message: string): FastifyReply {
  return reply
    .status(404)
    .header('content-type', 'text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .send(errorPage({ code: 'JUNIPER_ERR_NOT_FOUND', message, status: 404 }, contextOf(request)));
}
