// The web pages every kind of mail server shares (/<kind>-servers): the list, the new and edit forms, and
// the buttons Save, Connect your Outlook account, Test, Archive and Restore, over the kind's MailServers
// service. What truly differs (titles, the list's columns, the form, the test, the flashes' advice, extra
// buttons such as Fetch Now) is a ServerPageKind in the kind's page file: a third kind is one more of them.
// Access rules are the service's (assertMayManage), so these pages and the API cannot disagree.
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Services } from '../services.js';
import { actorOf } from '../http/actor.js';
import { managedServer } from '../http/managed-server.js';
import { isAppError } from '../lib/errors.js';
import type { CommonInput, KindName, MailServers, ServerRows } from '../mail-servers/mail-servers.js';
import type { AppProblem } from '../oauth/app-status.js';
import type { SettingsView } from '../settings/settings.js';
import { checked, formError, pageContext, redirectWithFlash, renderPage, type Flash, type Form } from './forms.js';
import { html, type SafeHtml } from './html.js';
import { outlookAppTrouble } from '../oauth/app-trouble.js';
import { appTroubleBanner } from './outlook-app-notice.js';
import type { PageContext } from './layout.js';
import { connectElsewhere, browserHostname } from '../settings/public-address.js';
import { errorFieldOf } from './server-form.js';
import { bindingOfRow } from '../oauth/server-binding.js';

/** What every kind's form body is given; the kind's formBody adds its own (a default From, a progress bar). */
export interface FormPage<V, F> {
  ctx: PageContext;
  /** Undefined for a new server. */
  server?: V | undefined;
  form: F;
  settings: SettingsView;
  error?: string | undefined;
  /** The field the error names, when the form shows it beside that field (the password). */
  errorField?: string | undefined;
  /** This page at web.base.url, when the browser reached it at another host: Connect works only there. */
  connectElsewhere?: string | null;
  result?: Flash | undefined;
}

type RenderOptions<F> = { form?: F; error?: string; errorField?: string | undefined; result?: Flash; status?: number };
/** The shared helpers a kind's own routes use. */
export interface ServerPageTools<R, F> {
  /** The server named by the path's :id, if the caller may manage it. */
  loadManaged: (request: FastifyRequest) => Promise<R>;
  /** The server's form page (a new server's when `server` is undefined). */
  renderServer: (request: FastifyRequest, reply: FastifyReply, server: R | undefined, opts?: RenderOptions<F>) => Promise<FastifyReply>;
  /** The server's page, after a POST, with the click's answer shown once. */
  redirectToServer: (reply: FastifyReply, server: R, flash: Flash) => FastifyReply;
}

export interface ServerPageKind<K extends KindName, F, C extends CommonInput, P extends Partial<CommonInput>, V> {
  servers: MailServers<K, C, P, V>;
  listTitle: string;
  /** The form's title for a new server (a stored one's is its name). */
  newTitle: string;
  listBody(ctx: PageContext, servers: ServerRows[K][], showArchived: boolean, appProblem: AppProblem | null): SafeHtml;
  /** A new server's form, prefilled with the user's address (undefined or '' for admins). */
  newForm(address: string | undefined): F;
  formOfServer(server: ServerRows[K]): F;
  formOfPost(body: Form): F;
  toCreate(form: F, body: Form): C;
  toPatch(form: F, body: Form, current: ServerRows[K]): P;
  /** `server` is the stored row, `given` the flash the caller asked for (undefined: none, the page may add its own). */
  formBody(page: FormPage<V, F>, server: ServerRows[K] | undefined, given: Flash | undefined): SafeHtml | Promise<SafeHtml>;
  /** Test Connection / Test and Confirm: the answer to the click, as a flash. */
  test(server: ServerRows[K]): Promise<Flash>;
  /** What the flashes add after "Server <name> created." / "... archived." etc., saying what to do next. */
  next: {
    created: { outlook: string; password: string };
    connected: string;
    saved?: (current: ServerRows[K], saved: ServerRows[K]) => string;
    archived: string;
    restored: string;
  };
  /** Routes only this kind has (incoming: Fetch Now). */
  routes?(app: FastifyInstance, tools: ServerPageTools<ServerRows[K], F>): void;
}

export function serverPages<K extends KindName, F, C extends CommonInput, P extends Partial<CommonInput>, V>(
  services: Pick<Services, 'oauthAppStatus' | 'outlookConnect' | 'parameters' | 'settings'>,
  kind: ServerPageKind<K, F, C, P, V>,
): FastifyPluginAsync {
  const { servers, next } = kind;
  const name = servers.kind.kind;
  const base = `/${name}-servers`;
  type Row = ServerRows[K];

  const loadManaged = (request: FastifyRequest): Promise<Row> => managedServer(servers, request);

  /** The server's page at web.base.url when this browser is at another host (Microsoft sends it back there). */
  async function elsewhere(request: FastifyRequest, server: Row | undefined): Promise<string | null> {
    const hostname = browserHostname(request.headers.origin, request.host);
    return connectElsewhere(await services.parameters.value('web.base.url'), hostname, server ? `${base}/${server.id}` : `${base}/new`);
  }

  async function renderServer(request: FastifyRequest, reply: FastifyReply, server: Row | undefined, opts: RenderOptions<F> = {}) {
    const ctx = pageContext(request, reply, name);
    const form = opts.form ?? (server ? kind.formOfServer(server) : kind.newForm(ctx.user?.role === 'admin' ? '' : ctx.user?.email.toLowerCase()));
    const [settings, appProblem, connectAt] = await Promise.all([services.settings.get(), server?.auth === 'outlook' ? services.oauthAppStatus.get() : null, elsewhere(request, server)]);
    const view = server ? servers.view(server, appProblem) : undefined;
    let result = opts.result;
    if (!result && appProblem) result = { kind: 'error', text: `The Outlook app has a problem: ${appProblem.message}` };
    const body = await kind.formBody({ ctx, server: view, form, settings, error: opts.error, errorField: opts.errorField, result, connectElsewhere: connectAt }, server, opts.result);
    return renderPage(reply, server ? server.name : kind.newTitle, body, ctx, opts.status ?? 200);
  }

  /**
   * Connect your Outlook account: to Microsoft's sign-in, or to the server's page saying what to fix first.
   * Always a redirect: the server is saved by then (a new one created), so a reload must not post it again.
   */
  async function connect(request: FastifyRequest, reply: FastifyReply, server: Row, saved = '') {
    // Started here, the sign-in would come back to web.base.url's host, where this session's cookie does not go,
    // and end on "started in another browser session". The form's edits are already saved; the page links there.
    const there = await elsewhere(request, server);
    if (there) {
      const from = browserHostname(request.headers.origin, request.host);
      const error = `Not sent to Microsoft: it would send you back to ${new URL(there).origin} (web.base.url), where your sign-in at ${from} does not count. What you typed is saved: open ${there}, sign in and click Connect your Outlook account there.`;
      return redirectWithFlash(reply, `${base}/${server.id}`, { kind: 'error', text: `${saved}${error}` });
    }
    try {
      const { authorizeUrl } = await services.outlookConnect.start(name, server.id, request.principal!, bindingOfRow(server));
      return await reply.redirect(authorizeUrl, 303);
    } catch (e) {
      // Missing credentials or base URL are configuration errors the person at the form can fix.
      if (!isAppError(e)) throw e;
      return redirectWithFlash(reply, `${base}/${server.id}`, { kind: 'error', text: `${saved}${e.message}` });
    }
  }

  return async (app) => {
    const access = { config: { access: 'user' as const } };

    app.get<{ Querystring: { archived?: string } }>(base, access, async (request, reply) => {
      const user = request.principal!.user;
      const showArchived = request.query.archived === '1';
      const rows = await servers.list({ includeArchived: showArchived, ownerUserId: user.role === 'admin' ? undefined : user.id });
      const ctx = pageContext(request, reply, name);
      // Every Outlook row depends on the app's credentials: a refused or expiring secret is said above the list.
      const trouble = await outlookAppTrouble(services);
      const banner = rows.some((r) => r.auth === 'outlook') ? appTroubleBanner(trouble, user.role === 'admin') : null;
      return renderPage(reply, kind.listTitle, html`${banner}${kind.listBody(ctx, rows, showArchived, trouble.problem)}`, ctx);
    });

    app.get(`${base}/new`, access, async (request, reply) => renderServer(request, reply, undefined));

    app.post<{ Body: Form }>(`${base}/new`, access, async (request, reply) => {
      const body = request.body ?? {};
      const form = kind.formOfPost(body);
      let row: Row;
      try {
        row = await servers.create(kind.toCreate(form, body), request.principal!.user, actorOf(request));
      } catch (e) {
        const err = formError(e);
        return renderServer(request, reply, undefined, { form, error: err.message, errorField: errorFieldOf(err.details), status: err.status });
      }
      if (checked(body, 'connect') && row.auth === 'outlook') return connect(request, reply, row, `Server ${row.name} created. Not connected yet: `);
      const then = row.auth === 'outlook' ? next.created.outlook : next.created.password;
      return redirectWithFlash(reply, `${base}/${row.id}`, { kind: 'success', text: `Server ${row.name} created.${then}` });
    });

    app.get<{ Querystring: { connected?: string } }>(`${base}/:id`, access, async (request, reply) => {
      const server = await loadManaged(request);
      // Where the Microsoft sign-in lands (GET /microsoft_outlook/confirm redirects here).
      const result: Flash | undefined = request.query.connected === '1' ? { kind: 'success', text: next.connected } : undefined;
      return renderServer(request, reply, server, { result });
    });

    app.post<{ Body: Form }>(`${base}/:id`, access, async (request, reply) => {
      const current = await loadManaged(request);
      const body = request.body ?? {};
      const form = kind.formOfPost(body);
      let row: Row;
      try {
        row = await servers.update(current.id, kind.toPatch(form, body, current), request.principal!.user, actorOf(request));
      } catch (e) {
        const err = formError(e);
        return renderServer(request, reply, current, { form, error: err.message, errorField: errorFieldOf(err.details), status: err.status });
      }
      // Connect your Outlook account is a button of this form: what was typed is saved before leaving for Microsoft.
      if (checked(body, 'connect') && row.auth === 'outlook') return connect(request, reply, row, `Server ${row.name} saved. Not connected yet: `);
      return redirectWithFlash(reply, `${base}/${row.id}`, { kind: 'success', text: `Server ${row.name} saved.${next.saved?.(current, row) ?? ''}` });
    });

    app.post(`${base}/:id/test`, access, async (request, reply) => {
      const server = await loadManaged(request);
      // Redirected with the answer as a flash: a reload shows the page, not a second test.
      return redirectWithFlash(reply, `${base}/${server.id}`, await kind.test(server));
    });

    kind.routes?.(app, { loadManaged, renderServer, redirectToServer: (reply, server, flash) => redirectWithFlash(reply, `${base}/${server.id}`, flash) });

    app.post(`${base}/:id/outlook/connect`, access, async (request, reply) => connect(request, reply, await loadManaged(request)));

    app.post(`${base}/:id/archive`, access, async (request, reply) => {
      const server = await loadManaged(request);
      await servers.archive(server.id, request.principal!.user, actorOf(request));
      return redirectWithFlash(reply, base, { kind: 'success', text: `Server ${server.name} archived. ${next.archived}` });
    });

    app.post(`${base}/:id/unarchive`, access, async (request, reply) => {
      const server = await loadManaged(request);
      const row = await servers.restore(server.id, request.principal!.user, actorOf(request));
      const state = row.active === 1 ? ' It is active again, as it was when archived.' : ' It stays inactive, as it was when archived: tick Active and save to use it.';
      return redirectWithFlash(reply, `${base}/${server.id}`, { kind: 'success', text: `Server ${server.name} restored.${state}${next.restored}` });
    });
  };
}
