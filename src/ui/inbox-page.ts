// The Inbox: fetched messages newest first (admins all, users those of the servers they own, through
// MessageStore's visibility rule), one message with its attachments and thread. A message's HTML is
// written by strangers: it is never put into Juniper's page. It is served on its own URL with a CSP
// `sandbox` header (no scripts, opaque origin, no remote loads, so no tracking pixels) and shown in an
// <iframe sandbox>; the text body is escaped like every other value.
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Services } from '../services.js';
import type { IncomingServer, Message } from '../db/schema.js';
import { parseInput } from '../lib/validate.js';
import type { MessageDetail, Viewer } from '../mailbox/messages.js';
import { pageContext, renderPage } from './forms.js';
import { html, type SafeHtml } from './html.js';
import { when } from './incoming-server-form.js';

const PAGE_SIZE = 50;
const idParams = z.object({ id: z.coerce.number().int().positive() });
// Empty select values mean "any", as a GET form sends them.
const emptyToUndefined = (v: unknown) => (v === '' ? undefined : v);
const listQuery = z.object({
  serverId: z.preprocess(emptyToUndefined, z.coerce.number().int().positive().optional()),
  threadId: z.preprocess(emptyToUndefined, z.coerce.number().int().positive().optional()),
  before: z.preprocess(emptyToUndefined, z.coerce.number().int().positive().optional()),
  q: z.preprocess(emptyToUndefined, z.string().max(200).optional()),
  mailbox: z.preprocess(emptyToUndefined, z.string().max(320).optional()),
  // Messages stored with a parse error, raw (docs/troubleshooting.md sends admins here to find them).
  quarantined: z.preprocess(emptyToUndefined, z.enum(['1']).optional()),
});
type ListQuery = z.output<typeof listQuery>;

/**
 * For the message's own HTML document: `sandbox` without allow-scripts or allow-same-origin even when the
 * URL is opened directly; nothing loads from anywhere except inline styles and data: images.
 */
export const MESSAGE_HTML_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'";

const viewerOf = (request: FastifyRequest): Viewer => {
  const user = request.principal!.user;
  return { userId: user.id, admin: user.role === 'admin' };
};

function queryString(q: ListQuery, before?: number): string {
  const p = new URLSearchParams();
  if (q.serverId !== undefined) p.set('serverId', String(q.serverId));
  if (q.threadId !== undefined) p.set('threadId', String(q.threadId));
  if (q.q !== undefined) p.set('q', q.q);
  if (q.mailbox !== undefined) p.set('mailbox', q.mailbox);
  if (q.quarantined !== undefined) p.set('quarantined', q.quarantined);
  if (before !== undefined) p.set('before', String(before));
  const s = p.toString();
  return s ? `?${s}` : '';
}

const dateOf = (m: Pick<Message, 'sent_at' | 'created_at'>) => when(new Date(m.sent_at ?? m.created_at).toISOString());

function flags(m: Pick<Message, 'quarantined' | 'is_bounce'>): SafeHtml | null {
  if (m.quarantined === 1) return html` <span class="tag tag-red">Quarantined</span>`;
  if (m.is_bounce === 1) return html` <span class="tag tag-amber">Bounce</span>`;
  return null;
}

function serverCell(m: Message, names: Map<number, string>): SafeHtml | string {
  if (m.direction === 'out') return html`<span class="muted">sent by Juniper</span>`;
  if (m.server_id === null) return '';
  return html`<a href="/inbox?serverId=${m.server_id}">${names.get(m.server_id) ?? `#${m.server_id}`}</a>`;
}

function listBody(rows: Message[], q: ListQuery, servers: IncomingServer[]): SafeHtml {
  const names = new Map(servers.map((s) => [s.id, s.name]));
  const last = rows[rows.length - 1];
  const mailboxes = [...new Set(servers.map((s) => s.username?.toLowerCase()).filter((m): m is string => !!m))].sort();
  return html`<div class="page-head"><h1>Inbox</h1></div>
<form method="get" action="/inbox" class="card filters" role="search">
  <div><label for="inbox-search">Search</label><input type="search" id="inbox-search" name="q" value="${q.q ?? ''}" placeholder="subject, sender or text"></div>
  <div><label for="mailbox">Mailbox</label><select id="mailbox" name="mailbox">
    <option value="">Any mailbox</option>
    ${mailboxes.map((m) => html`<option value="${m}"${q.mailbox === m ? html` selected` : null}>${m}</option>`)}
  </select></div>
  <div><label for="serverId">Server</label><select id="serverId" name="serverId">
    <option value="">Any server</option>
    ${servers.map((s) => html`<option value="${s.id}"${q.serverId === s.id ? html` selected` : null}>${s.name}</option>`)}
  </select></div>
  <div><label for="quarantined">Show</label><select id="quarantined" name="quarantined">
    <option value="">All messages</option>
    <option value="1"${q.quarantined ? html` selected` : null}>Quarantined only</option>
  </select></div>
  ${q.threadId !== undefined ? html`<input type="hidden" name="threadId" value="${q.threadId}">` : null}
  <div><button type="submit" class="secondary">Filter</button></div>
  ${q.threadId !== undefined ? html`<div><span class="tag tag-grey">Thread ${q.threadId}</span> <a href="/inbox">Show all</a></div>` : null}
</form>
${rows.length === 0
  ? html`<div class="card"><p class="muted">No messages${q.serverId !== undefined || q.threadId !== undefined || q.q !== undefined || q.mailbox !== undefined || q.quarantined !== undefined ? ' match these filters' : html` yet. Messages arrive once an <a href="/incoming-servers">incoming mail server</a> is confirmed.`}</p></div>`
  : html`<div class="card table-card"><table>
  <thead><tr><th>From</th><th>Subject</th><th>Date</th><th>Server</th><th>Thread</th></tr></thead>
  <tbody>${rows.map(
    (m) => html`<tr>
  <td>${m.from_header ?? html`<span class="muted">(unknown)</span>`}</td>
  <td><a href="/inbox/${m.id}">${m.subject || '(no subject)'}</a>${flags(m)}</td>
  <td class="nowrap">${dateOf(m)}</td>
  <td>${serverCell(m, names)}</td>
  <td>${m.thread_id !== null ? html`<a href="/inbox?threadId=${m.thread_id}">thread</a>` : null}</td>
</tr>`,
  )}</tbody></table></div>`}
<p class="pager">
  ${q.before !== undefined ? html`<a href="/inbox${queryString(q)}">← Newest</a>` : null}
  ${rows.length === PAGE_SIZE && last ? html` <a href="/inbox${queryString(q, last.id)}">Older →</a>` : null}
</p>`;
}

const size = (n: number) => (n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${Math.round(n / 1024)} KB` : `${(n / 1024 / 1024).toFixed(1)} MB`);

function messageBody(d: MessageDetail, thread: Message[], serverName: string | undefined): SafeHtml {
  return html`<p class="muted"><a href="/inbox">Inbox</a> /</p>
<div class="page-head"><h1>${d.subject || '(no subject)'}${d.quarantined ? html` <span class="tag tag-red">Quarantined</span>` : null}${d.isBounce ? html` <span class="tag tag-amber">Bounce</span>` : null}</h1>
  <div class="actions"><a class="button" href="/compose?reply=${d.id}">Reply</a><a class="button secondary" href="/compose?forward=${d.id}">Forward</a></div>
</div>
<div class="card">
  <dl class="facts">
    <dt>From</dt><dd>${d.from ?? html`<span class="muted">(unknown)</span>`}</dd>
    ${d.to.length ? html`<dt>To</dt><dd>${d.to.join(', ')}</dd>` : null}
    ${d.cc.length ? html`<dt>Cc</dt><dd>${d.cc.join(', ')}</dd>` : null}
    <dt>Date</dt><dd>${when(d.date ?? d.createdAt)}</dd>
    ${d.serverId !== null ? html`<dt>Server</dt><dd><a href="/inbox?serverId=${d.serverId}">${serverName ?? `#${d.serverId}`}</a></dd>` : null}
    ${d.mailbox ? html`<dt>Mailbox</dt><dd>${d.mailbox}</dd>` : null}
    ${d.messageId ? html`<dt>Message-ID</dt><dd><code>${d.messageId}</code></dd>` : null}
    ${d.bouncedMailId !== null ? html`<dt>Bounce of</dt><dd>outgoing mail ${d.bouncedMailId} (<code>GET /api/v1/mails/${d.bouncedMailId}</code>)</dd>` : null}
  </dl>
  ${d.parseError ? html`<p class="flash flash-error">Quarantined: ${d.parseError}</p>` : null}
  ${d.rawUrl ? html`<p><a href="${d.rawUrl}">Download the original (.eml)</a></p>` : null}
</div>
${d.text !== null ? html`<div class="card"><h2>Text</h2><pre class="mail-text">${d.text}</pre></div>` : null}
${d.html !== null
  ? html`<div class="card"><h2>HTML</h2>
  <p class="help">Shown without running its scripts or loading remote images.</p>
  <iframe class="mail-html" src="/inbox/${d.id}/html" sandbox="" referrerpolicy="no-referrer" title="HTML version of the message"></iframe></div>`
  : null}
${d.text === null && d.html === null && !d.parseError ? html`<div class="card"><p class="muted">This message has no body.</p></div>` : null}
${d.attachments.length
  ? html`<div class="card"><h2>Attachments</h2><ul class="attachments">${d.attachments.map(
      (a) => html`<li>${a.url ? html`<a href="${a.url}" download>${a.filename}</a>` : html`${a.filename} <span class="muted">(not kept: the server does not keep attachments)</span>`}
        <span class="muted">${a.contentType}, ${size(a.size)}</span></li>`,
    )}</ul></div>`
  : null}
${thread.length > 1
  ? html`<div class="card table-card"><table>
  <thead><tr><th colspan="3">Thread (${thread.length} messages)</th></tr></thead>
  <tbody>${thread.map(
    (m) => html`<tr${m.id === d.id ? html` class="current" aria-current="true"` : null}>
  <td>${m.id === d.id ? html`<strong>${m.subject || '(no subject)'}</strong>` : html`<a href="/inbox/${m.id}">${m.subject || '(no subject)'}</a>`}</td>
  <td>${m.direction === 'out' ? html`<span class="muted">sent by Juniper</span>` : (m.from_header ?? '')}</td>
  <td class="nowrap">${dateOf(m)}</td>
</tr>`,
  )}</tbody></table></div>`
  : null}`;
}

export function inboxPage(services: Pick<Services, 'incomingServers' | 'messages'>): FastifyPluginAsync {
  const { messages, incomingServers } = services;
  const visibleServers = (request: FastifyRequest) => {
    const user = request.principal!.user;
    return incomingServers.list({ includeArchived: true, ownerUserId: user.role === 'admin' ? undefined : user.id });
  };

  return async (app) => {
    app.get('/inbox', { config: { access: 'user' } }, async (request, reply) => {
      const q = parseInput(listQuery, request.query, 'filter');
      const [rows, servers] = await Promise.all([
        // Received mail only: what Juniper sent is in the Outbox (a thread view still shows both).
        messages.list(viewerOf(request), {
          serverId: q.serverId,
          threadId: q.threadId,
          direction: q.threadId === undefined ? 'in' : undefined,
          search: q.q,
          mailbox: q.mailbox,
          quarantined: q.quarantined ? true : undefined,
          before: q.before,
          newestFirst: true,
          limit: PAGE_SIZE,
        }),
        visibleServers(request),
      ]);
      const ctx = pageContext(request, reply, 'inbox');
      return renderPage(reply, 'Inbox', listBody(rows, q, servers), ctx);
    });

    app.get('/inbox/:id', { config: { access: 'user' } }, async (request, reply) => {
      const { id } = parseInput(idParams, request.params, 'path');
      const viewer = viewerOf(request);
      const detail = await messages.detail(viewer, id);
      const [thread, servers] = await Promise.all([
        detail.threadId !== null ? messages.list(viewer, { threadId: detail.threadId, limit: 200 }) : Promise.resolve([]),
        visibleServers(request),
      ]);
      const serverName = servers.find((s) => s.id === detail.serverId)?.name;
      const ctx = pageContext(request, reply, 'inbox');
      return renderPage(reply, detail.subject || '(no subject)', messageBody(detail, thread, serverName), ctx);
    });

    app.get('/inbox/:id/html', { config: { access: 'user' } }, async (request, reply) => {
      const { id } = parseInput(idParams, request.params, 'path');
      const m = await messages.get(viewerOf(request), id);
      return reply
        .header('content-type', 'text/html; charset=utf-8')
        .header('content-security-policy', MESSAGE_HTML_CSP)
        .header('x-content-type-options', 'nosniff')
        .header('referrer-policy', 'no-referrer')
        .header('cache-control', 'no-store')
        .send(m.html_body ?? '');
    });
  };
}
