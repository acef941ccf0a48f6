// Browser pages: sign-in, first-run setup, home, and (registered here so they share the page hooks) the
// settings, outgoing server, outbox, incoming server, inbox and system parameter pages. Forms post back
// here; state-changing forms of a signed-in user carry the session's CSRF token as a hidden field
// (checked by the authenticate hook).
import type { FastifyPluginAsync } from 'fastify';
import type { Services } from '../services.js';
import { setSessionCookie } from '../http/api/session.js';
import { assertSameSite } from '../http/same-site.js';
import { SESSION_COOKIE } from '../http/access.js';
import { SIGN_IN_BODY_LIMIT } from '../http/body-limits.js';
import { isAppError } from '../lib/errors.js';
import { appCss, appJs, faviconSvg } from './assets.js';
import { installPageHooks, pageContext, renderPage, sendPage, text, type Form } from './forms.js';
import { html, type SafeHtml } from './html.js';
import { page, type PageContext } from './layout.js';
import { appsPage } from './apps-page.js';
import { inboxPage } from './inbox-page.js';
import { incomingServersPage } from './incoming-servers-page.js';
import { outboxPage } from './outbox-page.js';
import { outgoingServersPage } from './outgoing-servers-page.js';
import { parametersPage } from './parameters-page.js';
import { settingsPage } from './settings-page.js';
import { composePage } from './compose-page.js';
import { routePage } from './route-page.js';
import { usersPage } from './users-page.js';
import { outlookAppTrouble } from '../oauth/app-trouble.js';
import { appTroubleBanner } from './outlook-app-notice.js';


/** Only same-site relative paths: an open redirect after sign-in would be a phishing aid. */
export function safeNext(next: unknown): string {
  // A repeated `next` comes as an array: never a path (sent on, it made two Location headers).
  // Browsers drop tabs and newlines and read \ as /, so "/\t/evil" or "/\\evil" would leave the site.
  // eslint-disable-next-line no-control-regex -- control characters are exactly what must be refused
  return typeof next === 'string' && /^\/(?![/\\])[^\x00-\x1f\x7f\\]*$/.test(next) ? next : '/';
}

function loginPage(next: string, error?: string, login = '', setupPending = false) {
  return page(
    'Sign in',
    html`<div class="card narrow">
  <h1>Sign in to Juniper</h1>
  ${setupPending
    ? html`<p class="flash flash-warning" role="status">Juniper has no admin yet. When it started, it printed a one-time setup link on its console (or in its service log, e.g. <code>journalctl -u juniper</code>): open that link to create the first admin. Restarting Juniper prints a new one.</p>`
    : null}
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
    <label for="login">Login</label><input type="text" id="login" name="login" value="${text(form, 'login')}" required>
    <label for="email">Email</label><input type="email" id="email" name="email" value="${text(form, 'email')}" required>
    <label for="name">Name</label><input type="text" id="name" name="name" value="${text(form, 'name')}">
    <label for="password">Password (at least 10 characters)</label><input type="password" id="password" name="password" autocomplete="new-password" required>
    <button type="submit">Create admin</button>
  </form>
</div>`,
  );
}

export function pageRoutes(services: Services): FastifyPluginAsync {
  return async (app) => {
    installPageHooks(app);
    app.get('/assets/app.js', { config: { access: 'public' }, logLevel: 'warn' }, async (_req, reply) =>
      reply.header('content-type', 'text/javascript; charset=utf-8').header('cache-control', 'public, max-age=3600').send(appJs),
    );
    app.get('/assets/app.css', { config: { access: 'public' }, logLevel: 'warn' }, async (_req, reply) =>
      reply.header('content-type', 'text/css; charset=utf-8').header('cache-control', 'public, max-age=3600').send(appCss),
    );

    // Browsers ask for it on every first visit; an answer keeps the log free of 404s.
    app.get('/favicon.ico', { config: { access: 'public' }, logLevel: 'warn' }, async (_req, reply) =>
      reply.header('content-type', 'image/svg+xml').header('cache-control', 'public, max-age=86400').send(faviconSvg),
    );

    app.get<{ Querystring: { next?: string } }>('/login', { config: { access: 'public' } }, async (request, reply) => {
      if (request.principal) return reply.redirect(safeNext(request.query.next));
      return sendPage(reply, loginPage(safeNext(request.query.next), undefined, '', services.firstRun.pending));
    });

    app.post<{ Body: Form }>('/login', { config: { access: 'public' }, bodyLimit: SIGN_IN_BODY_LIMIT }, async (request, reply) => {
      assertSameSite(request, await services.parameters.value('web.base.url'));
      const form = request.body;
      const [login, password, next] = [text(form, 'login'), text(form, 'password'), text(form, 'next')];
      try {
        const user = await services.signIn.attempt(login, password, request.ip);
        const session = await services.sessions.create(user.id);
        setSessionCookie(reply, session.token);
        return reply.redirect(safeNext(next), 303);
      } catch (e) {
        if (!isAppError(e) || e.status >= 500) throw e;
        return sendPage(reply, loginPage(safeNext(next), e.message, login, services.firstRun.pending), e.status);
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

    app.post<{ Body: Form }>('/setup', { config: { access: 'public' }, bodyLimit: SIGN_IN_BODY_LIMIT }, async (request, reply) => {
      assertSameSite(request, await services.parameters.value('web.base.url'));
      const form = request.body ?? {};
      const token = text(form, 'token');
      try {
        const view = await services.firstRun.complete(token, {
          login: text(form, 'login'),
          email: text(form, 'email'),
          name: text(form, 'name') || undefined,
          password: text(form, 'password'),
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
      const ctx = pageContext(request, reply, 'home');
      return renderPage(reply, 'Home', await homeBody(services, ctx.user!), ctx);
    });

    await app.register(appsPage(services));
    await app.register(settingsPage(services));
    await app.register(outgoingServersPage(services));
    await app.register(outboxPage(services));
    await app.register(incomingServersPage(services));
    await app.register(inboxPage(services));
    await app.register(parametersPage(services));
    await app.register(composePage(services));
    await app.register(routePage(services));
    await app.register(usersPage(services));
  };
}

/** Where the Outlook procedure starts, with what is done so far. */
async function homeBody(services: Pick<Services, 'settings' | 'oauthAppStatus' | 'outgoingServers' | 'queue' | 'incomingServers'>, user: NonNullable<PageContext['user']>): Promise<SafeHtml> {
  const admin = user.role === 'admin';
  const [settings, servers, counts, incoming, trouble] = await Promise.all([
    admin ? services.settings.get() : null,
    services.outgoingServers.list({ ownerUserId: admin ? undefined : user.id }),
    admin ? services.queue.countByState() : null,
    services.incomingServers.list({ ownerUserId: admin ? undefined : user.id }),
    outlookAppTrouble(services),
  ]);
  // 'attention': done once, but not working now (the Outlook app's credentials were refused or expire soon).
  const step = (state: boolean | 'attention', body: SafeHtml) =>
    html`<li><span class="tag ${state === 'attention' ? 'tag-red' : state ? 'tag-green' : 'tag-grey'}">${state === 'attention' ? 'needs attention' : state ? 'done' : 'to do'}</span> ${body}</li>`;
  const unless = (done: boolean, troubled: boolean) => (done && troubled ? 'attention' : done);
  const credentials = settings !== null && settings.customEmailServers && settings.outlook.clientId !== null && settings.outlook.hasClientSecret;
  const refused = trouble.problem !== null;
  const outlook = servers.filter((s) => s.auth === 'outlook');
  return html`<div class="card">
  <h1>Welcome, ${user.name || user.login}</h1>
  <p class="muted">Signed in as <code>${user.login}</code> (${user.email}).</p>
</div>
<div class="card">
  <h2>Sending mail through Microsoft 365</h2>
  ${outlook.length > 0 || incoming.some((s) => s.auth === 'outlook') || credentials ? appTroubleBanner(trouble, admin) : null}
  <ol class="steps">
    ${settings ? step(settings.outlook.enabled, html`In <a href="/apps?filter=none&amp;q=Outlook">Apps</a>, remove the Apps filter, type Outlook and install Microsoft Outlook.`) : null}
    ${admin ? step(unless(credentials, refused || trouble.secretWarning !== null), html`In <a href="/settings">Settings</a> → Discuss, tick Custom Email Servers and enter the Outlook Credentials (Client ID and Client Secret).`) : null}
    ${step(outlook.length > 0, html`Create a server in <a href="/outgoing-servers">Outgoing Email Servers</a> with Outlook ticked, its Username and From Filter.`)}
    ${step(unless(outlook.some((s) => s.token_status === 'valid'), refused), html`Click Connect your Outlook account, then Test Connection.`)}
  </ol>
</div>
<div class="card">
  <h2>Receiving mail from Microsoft 365</h2>
  <ol class="steps">
    ${step(incoming.some((s) => s.auth === 'outlook'), html`Create a server in <a href="/incoming-servers">Incoming Mail Servers</a> with Outlook Oauth Authentication ticked and the Microsoft Outlook username.`)}
    ${step(unless(incoming.some((s) => s.auth === 'outlook' && s.token_status === 'valid'), refused), html`Click Connect your Outlook account until Juniper states Outlook Token Valid.`)}
    ${step(incoming.some((s) => s.state === 'confirmed'), html`Click Test and Confirm; new mail then arrives in the <a href="/inbox">Inbox</a>.`)}
  </ol>
</div>
${counts
  ? html`<div class="card">
  <h2>Outbox</h2>
  <p>${(['queued', 'sending', 'sent', 'failed', 'cancelled'] as const).map((s) => html`<a class="tag ${s === 'failed' && counts[s] > 0 ? 'tag-red' : 'tag-grey'}" href="/outbox?state=${s}">${s} ${counts[s]}</a> `)}</p>
</div>`
  : null}`;
}
