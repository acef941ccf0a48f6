// Incoming Mail Servers: the list (admins see all, users their personal servers), the form, and its
// buttons: Save, Connect your Outlook account, Test and Confirm, Fetch Now, Archive. Access rules are the
// service's (assertMayManageIncoming), so these pages and the API cannot disagree.
import type { AppProblem } from '../oauth/app-status.js';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Services } from '../services.js';
import type { IncomingServer } from '../db/schema.js';
import { actorOf } from '../http/actor.js';
import { assertMayManageIncoming, incomingServerView } from '../incoming/servers.js';
import { isAppError } from '../lib/errors.js';
import { parseInput } from '../lib/validate.js';
import { checked, formError, pageContext, redirectWithFlash, renderPage, type Flash, type Form } from './forms.js';
import { html, type SafeHtml } from './html.js';
import {
  fetchFlash,
  formOfPost,
  formOfServer,
  incomingFormBody,
  newIncomingForm,
  stateTag,
  testConfirmFlash,
  toCreate,
  toPatch,
  when,
  type IncomingForm,
} from './incoming-server-form.js';
import type { PageContext } from './layout.js';
import { tokenTag } from './server-form.js';
import { fetchTarget } from '../jobs/fetch-jobs.js';
import { jobProgressHtml } from '../jobs/progress-html.js';

const idParams = z.object({ id: z.coerce.number().int().positive() });
/** How long Fetch Now waits for its job before answering with the progress bar instead of the counts. */
const FETCH_INLINE_WAIT_MS = 3000;

function listBody(ctx: PageContext, servers: IncomingServer[], showArchived: boolean, appProblem: AppProblem | null): SafeHtml {
  const rows = servers.map((row) => {
    const s = incomingServerView(row, appProblem);
    return html`<tr>
  <td><a href="/incoming-servers/${s.id}"><strong>${s.name}</strong></a>${s.ownerUserId !== null ? html`<span class="sub">Personal</span>` : null}</td>
  <td>${s.auth === 'outlook' ? 'Outlook (OAuth)' : 'Username and password'}${s.username ? html`<span class="sub">${s.username}</span>` : null}${s.auth === 'outlook' ? html`<span class="sub">${tokenTag(s.token)}</span>` : null}</td>
  <td class="nowrap">${s.host}:${s.port}<span class="sub">${s.security === 'none' ? 'no encryption' : s.security.toUpperCase()} · ${s.folder}</span></td>
  <td>every ${s.intervalMinutes} min<span class="sub">${s.lastFetchAt ? `last ${when(s.lastFetchAt)}` : 'never fetched'}</span>
    ${s.lastError ? html`<span class="sub error-text">failing${s.errorSince ? ` since ${when(s.errorSince)}` : ''}</span>` : null}</td>
  <td class="num">${s.priority}</td>
  <td>${stateTag(s)}
    ${s.archived ? html`<span class="tag tag-grey">Archived</span>` : s.active ? null : html`<span class="tag tag-grey">Inactive</span>`}</td>
</tr>`;
  });
  return html`<div class="page-head">
  <h1>Incoming Mail Servers</h1>
  <div class="actions"><a class="button" href="/incoming-servers/new">New server</a></div>
</div>
<p class="muted">Juniper fetches each confirmed, active server on its interval and stores the messages in the <a href="/inbox">Inbox</a>.
${ctx.user?.role === 'admin' ? null : html` You see your personal servers.`}</p>
${servers.length === 0
  ? html`<div class="card"><p>No incoming mail server yet. <a href="/incoming-servers/new">Create one</a>, for example with Outlook Oauth Authentication.</p></div>`
  : html`<div class="card table-card"><table>
  <thead><tr><th>Name</th><th>Authentication</th><th>Server</th><th>Fetch</th><th class="num">Priority</th><th>State</th></tr></thead>
  <tbody>${rows}</tbody></table></div>`}
<p>${showArchived ? html`<a href="/incoming-servers">Hide archived servers</a>` : html`<a href="/incoming-servers?archived=1">Show archived servers</a>`}</p>`;
}

export function incomingServersPage(services: Pick<Services, 'fetchJobs' | 'incoming' | 'incomingServers' | 'jobs' | 'oauthAppStatus' | 'outlookConnect' | 'settings'>): FastifyPluginAsync {
  const { incomingServers, incoming } = services;

  async function loadManaged(request: Pick<FastifyRequest, 'params' | 'principal'>): Promise<IncomingServer> {
    const { id } = parseInput(idParams, request.params, 'path');
    const server = await incomingServers.get(id);
    assertMayManageIncoming(request.principal!.user, server);
    return server;
  }

  async function renderServer(
    request: FastifyRequest,
    reply: FastifyReply,
    server: IncomingServer | undefined,
    opts: { form?: IncomingForm; error?: string; result?: Flash; status?: number } = {},
  ) {
    const ctx = pageContext(request, reply, 'incoming');
    const form = opts.form ?? (server ? formOfServer(server) : newIncomingForm(ctx.user?.role === 'admin' ? '' : ctx.user?.email.toLowerCase()));
    const [settings, appProblem] = await Promise.all([services.settings.get(), server?.auth === 'outlook' ? services.oauthAppStatus.get() : null]);
    const view = server ? incomingServerView(server, appProblem) : undefined;
    let result = opts.result;
    if (!result && appProblem) result = { kind: 'error', text: `The Outlook app has a problem: ${appProblem.message}` };
    // A fetch running in the background (this click's, or one started earlier) shows its live progress bar.
    const job = server && !opts.result ? await services.jobs.running(fetchTarget(server.id)) : undefined;
    const body = incomingFormBody({ ctx, server: view, form, settings, error: opts.error, result, progress: job ? jobProgressHtml(job, 'Fetching') : undefined });
    return renderPage(reply, view ? view.name : 'New Incoming Mail Server', body, ctx, opts.status ?? 200);
  }

  /** Connect your Outlook account: to Microsoft's sign-in, or back to the form saying what to fix first. */
  async function connect(request: FastifyRequest, reply: FastifyReply, server: IncomingServer) {
    try {
      const { authorizeUrl } = await services.outlookConnect.start('incoming', server.id, request.principal!);
      return await reply.redirect(authorizeUrl, 303);
    } catch (e) {
      // Missing credentials or base URL are configuration errors the person at the form can fix.
      if (!isAppError(e)) throw e;
      return renderServer(request, reply, server, { error: e.message, status: e.status });
    }
  }

  return async (app) => {
    app.get<{ Querystring: { archived?: string } }>('/incoming-servers', { config: { access: 'user' } }, async (request, reply) => {
      const user = request.principal!.user;
      const showArchived = request.query.archived === '1';
      const servers = await incomingServers.list({ includeArchived: showArchived, ownerUserId: user.role === 'admin' ? undefined : user.id });
      const ctx = pageContext(request, reply, 'incoming');
      return renderPage(reply, 'Incoming Mail Servers', listBody(ctx, servers, showArchived, await services.oauthAppStatus.get()), ctx);
    });

    app.get('/incoming-servers/new', { config: { access: 'user' } }, async (request, reply) => renderServer(request, reply, undefined));

    app.post<{ Body: Form }>('/incoming-servers/new', { config: { access: 'user' } }, async (request, reply) => {
      const body = request.body ?? {};
      const form = formOfPost(body);
      let row: IncomingServer;
      try {
        row = await incomingServers.create(toCreate(form, body), request.principal!.user, actorOf(request));
      } catch (e) {
        const err = formError(e);
        return renderServer(request, reply, undefined, { form, error: err.message, status: err.status });
      }
      if (checked(body, 'connect') && row.auth === 'outlook') return connect(request, reply, row);
      const next = row.auth === 'outlook' ? ' Now click Connect your Outlook account, then Test and Confirm.' : ' Click Test and Confirm to start fetching.';
      return redirectWithFlash(reply, `/incoming-servers/${row.id}`, { kind: 'success', text: `Server ${row.name} created.${next}` });
    });

    app.get<{ Params: { id: string }; Querystring: { connected?: string } }>('/incoming-servers/:id', { config: { access: 'user' } }, async (request, reply) => {
      const server = await loadManaged(request);
      // Where the Microsoft sign-in lands (GET /microsoft_outlook/confirm redirects here).
      const result: Flash | undefined =
        request.query.connected === '1' ? { kind: 'success', text: 'Outlook account connected. Now click Test and Confirm.' } : undefined;
      return renderServer(request, reply, server, { result });
    });

    app.post<{ Params: { id: string }; Body: Form }>('/incoming-servers/:id', { config: { access: 'user' } }, async (request, reply) => {
      const current = await loadManaged(request);
      const body = request.body ?? {};
      const form = formOfPost(body);
      let row: IncomingServer;
      try {
        row = await incomingServers.update(current.id, toPatch(form, body, current), request.principal!.user, actorOf(request));
      } catch (e) {
        const err = formError(e);
        return renderServer(request, reply, current, { form, error: err.message, status: err.status });
      }
      // Connect your Outlook account is a button of this form: what was typed is saved before leaving for Microsoft.
      if (checked(body, 'connect') && row.auth === 'outlook') return connect(request, reply, row);
      const draft = current.state === 'confirmed' && row.state === 'draft' ? ' It is a draft again: click Test and Confirm.' : '';
      return redirectWithFlash(reply, `/incoming-servers/${row.id}`, { kind: 'success', text: `Server ${row.name} saved.${draft}` });
    });

    app.post<{ Params: { id: string }; Body: Form }>('/incoming-servers/:id/test', { config: { access: 'user' } }, async (request, reply) => {
      const server = await loadManaged(request);
      const r = await incoming.testAndConfirm(server);
      // Rendered, not redirected: the answer belongs to this click, and the form shows the stored server.
      return renderServer(request, reply, await incomingServers.get(server.id), { result: testConfirmFlash(r) });
    });

    app.post<{ Params: { id: string }; Body: Form }>('/incoming-servers/:id/fetch', { config: { access: 'user' } }, async (request, reply) => {
      const server = await loadManaged(request);
      let result: Flash | undefined;
      try {
        // A job that finishes quickly answers this click with its counts; a longer one shows its progress bar.
        const { job } = await services.fetchJobs.start(server, request.principal!.user.id);
        const outcome = await services.fetchJobs.settled(job.id, FETCH_INLINE_WAIT_MS);
        if (outcome && !outcome.ok) throw outcome.error;
        if (outcome?.ok) result = fetchFlash(outcome.counts);
      } catch (e) {
        // The mail server's refusals (502/503) and "still a draft" (409) are answers for this form; only
        // Juniper's own failures (500) go to the error page.
        if (!isAppError(e) || e.status === 500) throw e;
        result = { kind: 'error', text: `Fetch failed: ${e.message}` };
      }
      return renderServer(request, reply, await incomingServers.get(server.id), { result });
    });

    app.post<{ Params: { id: string }; Body: Form }>('/incoming-servers/:id/outlook/connect', { config: { access: 'user' } }, async (request, reply) =>
      connect(request, reply, await loadManaged(request)),
    );

    app.post<{ Params: { id: string }; Body: Form }>('/incoming-servers/:id/unarchive', { config: { access: 'user' } }, async (request, reply) => {
      const server = await loadManaged(request);
      await incomingServers.restore(server.id, request.principal!.user, actorOf(request));
      return redirectWithFlash(reply, `/incoming-servers/${server.id}`, { kind: 'success', text: `Server ${server.name} restored.` });
    });

    app.post<{ Params: { id: string }; Body: Form }>('/incoming-servers/:id/archive', { config: { access: 'user' } }, async (request, reply) => {
      const server = await loadManaged(request);
      await incomingServers.archive(server.id, request.principal!.user, actorOf(request));
      return redirectWithFlash(reply, '/incoming-servers', { kind: 'success', text: `Server ${server.name} archived. Its messages stay in the Inbox.` });
    });
  };
}
