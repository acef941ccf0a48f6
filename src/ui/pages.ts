// Browser pages: sign-in, first-run setup, home. Forms post back here; state-changing forms of a signed-in
// user carry the session's CSRF token as a hidden field (checked by the authenticate hook).
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { Services } from '../app.js';
import { setSessionCookie } from '../http/api/session.js';
import { SESSION_COOKIE } from '../http/access.js';
import { isAppError } from '../lib/errors.js';
import { appCss } from './assets.js';
import { html } from './html.js';
import { page } from './layout.js';

type Form = Record<string, string | undefined>;

/** Only same-site relative paths: an open redirect after sign-in would be a phishing aid. */
export function safeNext(next: string | undefined): string {
  return next && next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/\\') ? next : '/';
}

function sendPage(reply: FastifyReply, body: string, status = 200) {
  return reply.status(status).header('content-type', 'text/html; charset=utf-8').header('cache-control', 'no-store').send(body);
}

function loginPage(next: string, error?: string, login = '') {
  return page(
    'Sign in',
    html`<div class="card narrow">
  <h1>Sign in to Juniper</h1>
  ${error ? html`<p class="error" role="alert">${error}</p>` : null}
  <form method="post" action="/login">
    <input type="hidden" name="next" value="${next}">
    <label for="login">Login</label>
    <input type="text" id="login" name="login" value="${login}" autocomplete="username" required autofocus>
    <label for="password">Password</label>
    <input type="password" id="password" name="password" autocomplete="current-password" required>
    <button type="submit">Sign in</button>
  </form>
</div>`,
  );
}

function setupPage(token: string, error?: string, form: Form = {}) {
  return page(
    'Set up Juniper',
    html`<div class="card narrow">
  <h1>Create the first admin</h1>
  <p class="muted">This link works once. The admin manages settings, mail servers and users.</p>
  ${error ? html`<p class="error" role="alert">${error}</p>` : null}
  <form method="post" action="/setup">
    <input type="hidden" name="token" value="${token}">
    <label for="login">Login</label><input type="text" id="login" name="login" value="${form.login ?? ''}" required>
    <label for="email">Email</label><input type="email" id="email" name="email" value="${form.email ?? ''}" required>
    <label for="name">Name</label><input type="text" id="name" name="name" value="${form.name ?? ''}">
    <label for="password">Password (at least 10 characters)</label><input type="password" id="password" name="password" autocomplete="new-password" required>
    <button type="submit">Create admin</button>
  </form>
</div>`,
  );
}

export function pageRoutes(services: Services): FastifyPluginAsync {
  return async (app) => {
    app.get('/assets/app.css', { config: { access: 'public' }, logLevel: 'warn' }, async (_req, reply) =>
      reply.header('content-type', 'text/css; charset=utf-8').header('cache-control', 'public, max-age=3600').send(appCss),
    );

    app.get<{ Querystring: { next?: string } }>('/login', { config: { access: 'public' } }, async (request, reply) => {
      if (request.principal) return reply.redirect(safeNext(request.query.next));
      return sendPage(reply, loginPage(safeNext(request.query.next)));
    });

    app.post<{ Body: Form }>('/login', { config: { access: 'public' } }, async (request, reply) => {
      const { login = '', password = '', next } = request.body ?? {};
      try {
        const user = await services.signIn.attempt(login, password, request.ip);
        const session = await services.sessions.create(user.id);
        setSessionCookie(reply, session.token);
        return reply.redirect(safeNext(next), 303);
      } catch (e) {
        if (!isAppError(e) || e.status >= 500) throw e;
        return sendPage(reply, loginPage(safeNext(next), e.message, login), e.status);
      }
    });

    app.post('/logout', { config: { access: 'user' } }, async (request, reply) => {
      const token = request.cookies[SESSION_COOKIE];
      if (token) await services.sessions.destroy(token);
      void reply.clearCookie(SESSION_COOKIE, { path: '/' });
      return reply.redirect('/login', 303);
    });

    app.get<{ Querystring: { token?: string } }>('/setup', { config: { access: 'public' } }, async (request, reply) => {
      const token = request.query.token ?? '';
      try {
        services.firstRun.check(token);
      } catch (e) {
        if (!isAppError(e)) throw e;
        return sendPage(reply, page('Setup link', html`<div class="card narrow"><h1>Setup link not valid</h1><p class="error">${e.message}</p><p><a href="/login">Sign in</a></p></div>`), 403);
      }
      return sendPage(reply, setupPage(token));
    });

    app.post<{ Body: Form }>('/setup', { config: { access: 'public' } }, async (request, reply) => {
      const form = request.body ?? {};
      const token = form.token ?? '';
      try {
        const view = await services.firstRun.complete(token, {
          login: form.login ?? '',
          email: form.email ?? '',
          name: form.name,
          password: form.password ?? '',
        });
        const session = await services.sessions.create(view.id);
        setSessionCookie(reply, session.token);
        return reply.redirect('/', 303);
      } catch (e) {
        if (!isAppError(e) || e.status >= 500) throw e;
        const status = e.code === 'JUNIPER_ERR_SETUP_TOKEN' ? 403 : 400;
        return sendPage(reply, setupPage(token, e.message, { ...form, password: '' }), status);
      }
    });

    app.get('/', { config: { access: 'user' } }, async (request, reply) => {
      const p = request.principal!;
      const params = p.user.role === 'admin' ? await services.parameters.list() : [];
      const body = html`<div class="card">
  <h1>Welcome, ${p.user.name || p.user.login}</h1>
  <p class="muted">Signed in as <code>${p.user.login}</code> (${p.user.email}).</p>
</div>
${p.user.role === 'admin'
  ? html`<div class="card">
  <h2>System parameters</h2>
  <table><thead><tr><th>Key</th><th>Value</th></tr></thead><tbody>
  ${params.map((x) => html`<tr><td><code>${x.key}</code></td><td>${x.value}${x.isDefault ? html` <span class="muted">(default)</span>` : null}</td></tr>`)}
  </tbody></table>
  <p class="muted">Change them with <code>juniper params set KEY VALUE</code> or <code>PUT /api/v1/parameters/KEY</code>.</p>
</div>`
  : null}`;
      return sendPage(reply, page('Home', body, { user: p.user, csrfToken: p.session?.csrfToken ?? null }));
    });
  };
}
