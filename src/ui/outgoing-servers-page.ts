// Outgoing Email Servers: the list (admins see all, users their personal servers), the form, and its
// buttons: Save, Connect your Outlook account, Test Connection, Archive. Access rules are the service's
// (assertMayManage), so these pages and the API cannot disagree.
import type { AppProblem } from '../oauth/app-status.js';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Services } from '../services.js';
import type { OutgoingServer } from '../db/schema.js';
import { actorOf } from '../http/actor.js';
import { isAppError } from '../lib/errors.js';
import { parseInput } from '../lib/validate.js';
import { testOutgoingServer } from '../outgoing/connection-test.js';
import { assertMayManage, outgoingServerView } from '../outgoing/servers.js';
import { defaultFromAddress } from '../settings/parameter-rules.js';
import { checked, formError, pageContext, redirectWithFlash, renderPage, type Flash, type Form } from './forms.js';
import { html, type SafeHtml } from './html.js';
import type { PageContext } from './layout.js';
import {
  authLabel,
  formOfPost,
  formOfServer,
  newServerForm,
  serverFormBody,
  testResultFlash,
  toCreate,
  toPatch,
  tokenTag,
  type ServerForm,
} from './outgoing-server-form.js';

const idParams = z.object({ id: z.coerce.number().int().positive() });

function listBody(ctx: PageContext, servers: OutgoingServer[], showArchived: boolean, appProblem: AppProblem | null): SafeHtml {
  const rows = servers.map((row) => {
    const s = outgoingServerView(row, appProblem);
    return html`<tr>
  <td><a href="/outgoing-servers/${s.id}"><strong>${s.name}</strong></a>${s.ownerUserId !== null ? html`<span class="sub">Personal</span>` : null}</td>
  <td>${authLabel(s.auth)}${s.username ? html`<span class="sub">${s.username}</span>` : null}${s.auth === 'outlook' ? html`<span class="sub">${tokenTag(s.token)}</span>` : null}</td>
  <td class="nowrap">${s.host}:${s.port}<span class="sub">${s.security === 'none' ? 'no encryption' : s.security.toUpperCase()}</span></td>
  <td>${s.fromFilter ?? html`<span class="muted">any sender</span>`}</td>
  <td class="num">${s.priority}</td>
  <td>${s.archived ? html`<span class="tag tag-grey">Archived</span>` : s.active ? html`<span class="tag tag-green">Active</span>` : html`<span class="tag tag-grey">Inactive</span>`}
    ${s.lastTest ? html`<span class="sub">Test ${s.lastTest.ok ? 'passed' : 'failed'}</span>` : null}</td>
</tr>`;
  });
  return html`<div class="page-head">
  <h1>Outgoing Email Servers</h1>
  <div class="actions"><a class="button" href="/outgoing-servers/new">New server</a></div>
</div>
<p class="muted">Each mail goes through the first active server whose From Filter matches its sender, lowest priority first.
${ctx.user?.role === 'admin' ? null : html` You see your personal servers.`}</p>
${servers.length === 0
  ? html`<div class="card"><p>No outgoing email server yet. <a href="/outgoing-servers/new">Create one</a>, for example with Outlook.</p></div>`
  : html`<div class="card table-card"><table>
  <thead><tr><th>Name</th><th>Authentication</th><th>Server</th><th>From Filter</th><th class="num">Priority</th><th>Status</th></tr></thead>
  <tbody>${rows}</tbody></table></div>`}
<p>${showArchived ? html`<a href="/outgoing-servers">Hide archived servers</a>` : html`<a href="/outgoing-servers?archived=1">Show archived servers</a>`}</p>`;
}

export function outgoingServersPage(services: Pick<Services, 'oauthAppStatus' | 'outgoingServers' | 'outlookConnect' | 'parameters' | 'settings' | 'tokens'>): FastifyPluginAsync {
  const { outgoingServers } = services;

  async function loadManaged(request: Pick<FastifyRequest, 'params' | 'principal'>): Promise<OutgoingServer> {
    const { id } = parseInput(idParams, request.params, 'path');
    const server = await outgoingServers.get(id);
    assertMayManage(request.principal!.user, server);
    return server;
  }

  async function renderServer(
    request: FastifyRequest,
    reply: FastifyReply,
    server: OutgoingServer | undefined,
    opts: { form?: ServerForm; error?: string; result?: Flash; status?: number } = {},
  ) {
    const ctx = pageContext(request, reply, 'outgoing');
    const form = opts.form ?? (server ? formOfServer(server) : newServerForm(ctx.user?.role === 'admin' ? '' : ctx.user?.email.toLowerCase()));
    const [settings, appProblem, snapshot] = await Promise.all([
      services.settings.get(),
      server?.auth === 'outlook' ? services.oauthAppStatus.get() : null,
      services.parameters.snapshot(),
    ]);
    const view = server ? outgoingServerView(server, appProblem) : undefined;
    let result = opts.result;
    if (!result && appProblem) result = { kind: 'error', text: `The Outlook app has a problem: ${appProblem.message}` };
    const body = serverFormBody({ ctx, server: view, form, settings, defaultFrom: defaultFromAddress(snapshot), error: opts.error, result });
    return renderPage(reply, view ? view.name : 'New Outgoing Email Server', body, ctx, opts.status ?? 200);
  }

  /** Connect your Outlook account: to Microsoft's sign-in, or back to the form saying what to fix first. */
  async function connect(request: FastifyRequest, reply: FastifyReply, server: OutgoingServer) {
    try {
      const { authorizeUrl } = await services.outlookConnect.start('outgoing', server.id, request.principal!);
      return await reply.redirect(authorizeUrl, 303);
    } catch (e) {
      // Missing credentials or base URL are configuration errors the person at the form can fix.
      if (!isAppError(e)) throw e;
      return renderServer(request, reply, server, { error: e.message, status: e.status });
    }
  }

  return async (app) => {
    app.get<{ Querystring: { archived?: string } }>('/outgoing-servers', { config: { access: 'user' } }, async (request, reply) => {
      const user = request.principal!.user;
      const showArchived = request.query.archived === '1';
      const servers = await outgoingServers.list({ includeArchived: showArchived, ownerUserId: user.role === 'admin' ? undefined : user.id });
      const ctx = pageContext(request, reply, 'outgoing');
      return renderPage(reply, 'Outgoing Email Servers', listBody(ctx, servers, showArchived, await services.oauthAppStatus.get()), ctx);
    });

    app.get('/outgoing-servers/new', { config: { access: 'user' } }, async (request, reply) => renderServer(request, reply, undefined));

    app.post<{ Body: Form }>('/outgoing-servers/new', { config: { access: 'user' } }, async (request, reply) => {
      const body = request.body ?? {};
      const form = formOfPost(body);
      let row: OutgoingServer;
      try {
        row = await outgoingServers.create(toCreate(form, body), request.principal!.user, actorOf(request));
      } catch (e) {
        const err = formError(e);
        return renderServer(request, reply, undefined, { form, error: err.message, status: err.status });
      }
      if (checked(body, 'connect') && row.auth === 'outlook') return connect(request, reply, row);
      const next = row.auth === 'outlook' ? ' Now click Connect your Outlook account.' : ' Click Test Connection to check it.';
      return redirectWithFlash(reply, `/outgoing-servers/${row.id}`, { kind: 'success', text: `Server ${row.name} created.${next}` });
    });

    app.get<{ Params: { id: string }; Querystring: { connected?: string } }>(
      '/outgoing-servers/:id',
      { config: { access: 'user' } },
      async (request, reply) => {
        const server = await loadManaged(request);
        // Where the Microsoft sign-in lands (GET /microsoft_outlook/confirm redirects here).
        const result: Flash | undefined = request.query.connected === '1' ? { kind: 'success', text: 'Outlook account connected.' } : undefined;
        return renderServer(request, reply, server, { result });
      },
    );

    app.post<{ Params: { id: string }; Body: Form }>('/outgoing-servers/:id', { config: { access: 'user' } }, async (request, reply) => {
      const current = await loadManaged(request);
      const body = request.body ?? {};
      const form = formOfPost(body);
      let row: OutgoingServer;
      try {
        row = await outgoingServers.update(current.id, toPatch(form, body, current), request.principal!.user, actorOf(request));
      } catch (e) {
        const err = formError(e);
        return renderServer(request, reply, current, { form, error: err.message, status: err.status });
      }
      // Connect your Outlook account is a button of this form: what was typed is saved before leaving for Microsoft.
      if (checked(body, 'connect') && row.auth === 'outlook') return connect(request, reply, row);
      return redirectWithFlash(reply, `/outgoing-servers/${row.id}`, { kind: 'success', text: `Server ${row.name} saved.` });
    });

    app.post<{ Params: { id: string }; Body: Form }>('/outgoing-servers/:id/test', { config: { access: 'user' } }, async (request, reply) => {
      const server = await loadManaged(request);
      const r = await testOutgoingServer(server, { servers: outgoingServers, parameters: services.parameters, tokens: services.tokens, graphEndpoint: () => services.settings.graphEndpoint() });
      // Rendered, not redirected: the answer belongs to this click, and the form shows the stored server.
      return renderServer(request, reply, await outgoingServers.get(server.id), { result: testResultFlash(r.ok, r.message, r.warnings) });
    });

    app.post<{ Params: { id: string }; Body: Form }>('/outgoing-servers/:id/outlook/connect', { config: { access: 'user' } }, async (request, reply) =>
      connect(request, reply, await loadManaged(request)),
    );

    app.post<{ Params: { id: string }; Body: Form }>('/outgoing-servers/:id/archive', { config: { access: 'user' } }, async (request, reply) => {
      const server = await loadManaged(request);
      await outgoingServers.archive(server.id, request.principal!.user, actorOf(request));
      return redirectWithFlash(reply, '/outgoing-servers', {
        kind: 'success',
        text: `Server ${server.name} archived. Mails already sent through it keep their history; Show archived servers lists it to restore it.`,
      });
    });

    app.post<{ Params: { id: string }; Body: Form }>('/outgoing-servers/:id/unarchive', { config: { access: 'user' } }, async (request, reply) => {
      const server = await loadManaged(request);
      await outgoingServers.restore(server.id, request.principal!.user, actorOf(request));
      return redirectWithFlash(reply, `/outgoing-servers/${server.id}`, { kind: 'success', text: `Server ${server.name} restored. It stays inactive until you tick Active and save.` });
    });
  };
}
