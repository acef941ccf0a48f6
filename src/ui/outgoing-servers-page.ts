// Outgoing Email Servers: the list's columns, the form with its default From, and Test Connection. The
// pages every kind shares (list, form, Save, Connect your Outlook account, Archive) are server-pages.ts.
import type { AppProblem } from '../oauth/app-status.js';
import type { FastifyPluginAsync } from 'fastify';
import type { Services } from '../services.js';
import type { OutgoingServer } from '../db/schema.js';
import { testOutgoingServer } from '../outgoing/connection-test.js';
import { outgoingServerView, type OutgoingServerView } from '../outgoing/servers.js';
import { defaultFromAddress } from '../settings/parameter-rules.js';
import { html, type SafeHtml } from './html.js';
import type { PageContext } from './layout.js';
import { authLabel, formOfPost, formOfServer, newServerForm, serverFormBody, testResultFlash, toCreate, toPatch, tokenTag } from './outgoing-server-form.js';
import { tokenBlocker } from './server-form.js';
import { serverPages } from './server-pages.js';

/** The status column's second line: what stops the server (tokenBlocker) before how its last test went. */
function statusNote(s: OutgoingServerView): SafeHtml | null {
  const blocker = s.archived ? null : tokenBlocker(s);
  if (blocker) return html`<span class="sub error-text">${blocker}</span>`;
  return s.lastTest ? html`<span class="sub">Test ${s.lastTest.ok ? 'passed' : 'failed'}</span>` : null;
}

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
    ${statusNote(s)}</td>
</tr>`;
  });
  return html`<div class="page-head">
  <h1>Outgoing Email Servers</h1>
  <div class="actions"><a class="button" href="/outgoing-servers/new">Create a new email server</a></div>
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
  return serverPages(services, {
    servers: outgoingServers,
    listTitle: 'Outgoing Email Servers',
    newTitle: 'New Outgoing Email Server',
    listBody,
    newForm: newServerForm,
    formOfServer,
    formOfPost,
    toCreate,
    toPatch,
    formBody: async (page) => serverFormBody({ ...page, defaultFrom: defaultFromAddress(await services.parameters.snapshot()) }),
    test: async (server) => {
      const r = await testOutgoingServer(server, { servers: outgoingServers, parameters: services.parameters, tokens: services.tokens, graphEndpoint: () => services.settings.graphEndpoint() });
      return testResultFlash(r.ok, r.message, r.warnings);
    },
    next: {
      created: { outlook: ' Now click Connect your Outlook account.', password: ' Click Test Connection to check it.' },
      connected: 'Outlook account connected.',
      archived: 'Mails already sent through it keep their history; Show archived servers lists it to restore it.',
      restored: '',
    },
  });
}
