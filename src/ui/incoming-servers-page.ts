// Incoming Mail Servers: the list's columns, the form with its fetch status, Test and Confirm, and Fetch
// Now. The pages every kind shares (list, form, Save, Connect your Outlook account, Archive) are server-pages.ts.
import type { AppProblem } from '../oauth/app-status.js';
import type { FastifyPluginAsync } from 'fastify';
import type { Services } from '../services.js';
import type { IncomingServer } from '../db/schema.js';
import { incomingServerView } from '../incoming/servers.js';
import { isAppError } from '../lib/errors.js';
import type { Flash } from './forms.js';
import { html, type SafeHtml } from './html.js';
import { fetchFlash, formOfPost, formOfServer, incomingFormBody, newIncomingForm, stateTag, testConfirmFlash, toCreate, toPatch, when } from './incoming-server-form.js';
import type { PageContext } from './layout.js';
import { tokenBlocker, tokenTag } from './server-form.js';
import { serverPages } from './server-pages.js';
import { jobProgressHtml } from '../jobs/progress-html.js';
import { isRunningElsewhere } from '../jobs/fetch-jobs.js';

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
  <td>${stateTag(s)}${!s.archived && tokenBlocker(s) ? html`<span class="sub error-text">${tokenBlocker(s)}</span>` : null}
    ${s.archived ? html`<span class="tag tag-grey">Archived</span>` : s.active ? null : html`<span class="tag tag-grey">Inactive</span>`}</td>
</tr>`;
  });
  return html`<div class="page-head">
  <h1>Incoming Mail Servers</h1>
  <div class="actions"><a class="button" href="/incoming-servers/new">Create a new configuration</a></div>
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

export function incomingServersPage(services: Pick<Services, 'fetchJobs' | 'incoming' | 'incomingServers' | 'oauthAppStatus' | 'outlookConnect' | 'parameters' | 'settings'>): FastifyPluginAsync {
  return serverPages(services, {
    servers: services.incomingServers,
    listTitle: 'Incoming Mail Servers',
    newTitle: 'New Incoming Mail Server',
    listBody,
    newForm: newIncomingForm,
    formOfServer,
    formOfPost,
    toCreate,
    toPatch,
    formBody: async (page, server, given) => {
      // A fetch running in the background (this click's, one started earlier, or another process's that this
      // click was not started beside: a warning) shows its live progress bar; not under a click's error.
      const job = server && (!given || given.kind === 'warning') ? await services.fetchJobs.running(server.id) : undefined;
      return incomingFormBody({ ...page, progress: job ? jobProgressHtml(job, 'Fetching') : undefined });
    },
    test: async (server) => testConfirmFlash(await services.incoming.testAndConfirm(server)),
    next: {
      created: { outlook: ' Now click Connect your Outlook account, then Test and Confirm.', password: ' Click Test and Confirm to start fetching.' },
      connected: 'Outlook account connected. Now click Test and Confirm.',
      saved: (current, row) => (current.state === 'confirmed' && row.state === 'draft' ? ' It is a draft again: click Test and Confirm.' : ''),
      archived: 'Its messages stay in the Inbox.',
      restored: '',
    },
    routes: (app, { loadManaged, redirectToServer }) => {
      app.post('/incoming-servers/:id/fetch', { config: { access: 'user' } }, async (request, reply) => {
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
          // Another process's job holds the server: nothing failed, and the page shows that job's progress bar.
          result = isRunningElsewhere(e) ? { kind: 'warning', text: `Not started: ${e.message}` } : { kind: 'error', text: `Fetch failed: ${e.message}` };
        }
        // Redirected, so a reload shows the page (with a running job's progress bar) instead of fetching again.
        return result ? redirectToServer(reply, server, result) : reply.redirect(`/incoming-servers/${server.id}`, 303);
      });
    },
  });
}
