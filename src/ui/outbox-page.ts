// The Outbox: the outgoing queue with filters by state and server, and Retry / Cancel. Admins see every
// mail, users the mails they enqueued (the same rule as GET /api/v1/mails).
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Services } from '../services.js';
import type { MailAttempt, MailState, OutgoingMail } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import { parseInput } from '../lib/validate.js';
import { attemptViewFor, mailViewFor, reasonServers } from '../outgoing/mail-views.js';
import type { MailView } from '../outgoing/queue.js';
import { explainRoute, type RouteExplanation } from '../outgoing/route-explainer.js';
import { csrfField, formError, pageContext, redirectWithFlash, renderPage, text, type Form } from './forms.js';
import { html, type SafeHtml } from './html.js';
import type { PageContext } from './layout.js';

const PAGE_SIZE = 100;
const states: MailState[] = ['queued', 'sending', 'sent', 'failed', 'cancelled'];
const idParams = z.object({ id: z.coerce.number().int().positive() });
// Empty select values mean "any", as a GET form sends them.
const emptyToUndefined = (v: unknown) => (v === '' ? undefined : v);
const listQuery = z.object({
  state: z.preprocess(emptyToUndefined, z.enum(states).optional()),
  serverId: z.preprocess(emptyToUndefined, z.coerce.number().int().positive().optional()),
  before: z.preprocess(emptyToUndefined, z.coerce.number().int().positive().optional()),
});
type ListQuery = z.output<typeof listQuery>;

const stateTag: Record<MailState, string> = { queued: 'tag-grey', sending: 'tag-amber', sent: 'tag-green', failed: 'tag-red', cancelled: 'tag-grey' };

const when = (iso: string) => `${iso.slice(0, 16).replace('T', ' ')} UTC`;

function queryString(q: ListQuery, before?: number): string {
  const p = new URLSearchParams();
  if (q.state) p.set('state', q.state);
  if (q.serverId !== undefined) p.set('serverId', String(q.serverId));
  if (before !== undefined) p.set('before', String(before));
  const s = p.toString();
  return s ? `?${s}` : '';
}

/** The state as the counts above the table name it; why a queued mail waits goes to the Reason column. */
function stateCell(m: MailView): SafeHtml {
  return html`<span class="tag ${stateTag[m.state]}">${m.state}</span>
    ${m.state === 'queued' && m.nextAttemptAt && Date.parse(m.nextAttemptAt) > Date.now() ? html`<span class="sub">next attempt ${when(m.nextAttemptAt)}</span>` : null}
    ${m.sentAt ? html`<span class="sub">${when(m.sentAt)}</span>` : null}`;
}

function reasonCell(m: MailView): SafeHtml | null {
  if (m.failureReason) return html`${m.failureType ? html`<strong>${m.failureType}</strong>: ` : null}${m.failureReason}`;
  if (m.state === 'queued' && m.waitingReason) return html`<strong>waiting</strong>: ${m.waitingReason}`;
  return null;
}

function row(ctx: PageContext, m: MailView, serverNames: Map<number, string>, back: string): SafeHtml {
  const recipients = [...m.to, ...m.cc, ...m.bcc];
  const actionForm = (verb: 'retry' | 'cancel', label: string, cls: string) =>
    html`<form method="post" action="/outbox/${m.id}/${verb}" class="inline">${csrfField(ctx)}<input type="hidden" name="back" value="${back}"><button type="submit" class="${cls} small">${label}</button></form>`;
  return html`<tr>
  <td class="num"><a href="/outbox/${m.id}" aria-label="Mail ${m.id}: details">${m.id}</a></td>
  <td>${stateCell(m)}</td>
  <td class="num">${m.attempts}</td>
  <td>${m.effectiveFrom ?? m.from}<span class="sub">→ ${recipients.slice(0, 3).join(', ')}${recipients.length > 3 ? ` +${recipients.length - 3} more` : ''}</span></td>
  <td>${m.subject || html`<span class="muted">(no subject)</span>`}</td>
  <td>${m.serverId === null ? html`<span class="muted">—</span>` : (serverNames.get(m.serverId) ?? `#${m.serverId}`)}</td>
  <td>${reasonCell(m)}</td>
  <td><div class="actions">
    ${m.state === 'failed' || m.state === 'cancelled' || m.state === 'queued' ? actionForm('retry', 'Retry', 'secondary') : null}
    ${m.state === 'queued' ? actionForm('cancel', 'Cancel', 'danger') : null}
  </div></td>
</tr>`;
}

function outboxBody(ctx: PageContext, mails: MailView[], q: ListQuery, servers: { id: number; name: string; archived: boolean }[], counts: Record<MailState, number> | null): SafeHtml {
  // Archived servers still name the mails they sent, but are no longer offered as a filter.
  const names = new Map(servers.map((s) => [s.id, s.name]));
  const back = `/outbox${queryString(q, q.before)}`;
  const last = mails[mails.length - 1];
  return html`<div class="page-head"><h1>Outbox</h1>
  <div class="actions"><a class="button" href="/compose">New mail</a></div>
  ${counts ? html`<div class="actions">${states.map((s) => html`<span class="tag ${stateTag[s]}">${s} ${counts[s]}</span>`)}</div>` : null}
</div>
<form method="get" action="/outbox" class="card filters">
  <div><label for="state">State</label><select id="state" name="state">
    <option value="">Any state</option>
    ${states.map((s) => html`<option value="${s}"${q.state === s ? html` selected` : null}>${s}</option>`)}
  </select></div>
  <div><label for="serverId">Server</label><select id="serverId" name="serverId">
    <option value="">Any server</option>
    ${servers.filter((s) => !s.archived || q.serverId === s.id).map((s) => html`<option value="${s.id}"${q.serverId === s.id ? html` selected` : null}>${s.name}</option>`)}
  </select></div>
  <div><button type="submit" class="secondary">Filter</button></div>
</form>
${mails.length === 0
  ? html`<div class="card"><p class="muted">No mails${q.state || q.serverId !== undefined ? ' match these filters' : ' yet'}.</p></div>`
  : html`<div class="card table-card"><table>
  <thead><tr><th>#</th><th>State</th><th>Attempts</th><th>From → To</th><th>Subject</th><th>Server</th><th>Reason</th><th><span class="visually-hidden">Actions</span></th></tr></thead>
  <tbody>${mails.map((m) => row(ctx, m, names, back))}</tbody></table></div>`}
<p class="pager">
  ${q.before !== undefined ? html`<a href="/outbox${queryString(q)}">← Newest</a>` : null}
  ${mails.length === PAGE_SIZE && last ? html` <a href="/outbox${queryString(q, last.id)}">Older →</a>` : null}
</p>`;
}

/** Only back to the outbox itself or one of its mails: the field comes from the browser. */
function safeBack(back: string): string {
  return /^\/outbox(\/\d+)?(\?[\w=&%.-]*)?$/.test(back) ? back : '/outbox';
}

/**
 * One mail: the headers as sent (From, Reply-To, envelope), the server used and why (the route explanation,
 * computed as the dispatcher computes it), the attempts with the server's last reply, Retry and Cancel.
 */
function mailBody(ctx: PageContext, mail: OutgoingMail, m: MailView, serverName: string | null, route: RouteExplanation, attempts: MailAttempt[], names: Map<number, string>, followUps: readonly Pick<OutgoingMail, 'id' | 'state' | 'envelope_to'>[] = []): SafeHtml {
  const back = `/outbox/${m.id}`;
  const actionForm = (verb: 'retry' | 'cancel', label: string, cls: string) =>
    html`<form method="post" action="/outbox/${m.id}/${verb}" class="inline">${csrfField(ctx)}<input type="hidden" name="back" value="${back}"><button type="submit" class="${cls}">${label}</button></form>`;
  return html`<p class="muted"><a href="/outbox">Outbox</a> /</p>
<div class="page-head"><h1>Mail ${m.id}: ${m.subject || '(no subject)'}</h1>
  <div class="actions">
    ${m.state === 'failed' || m.state === 'cancelled' || m.state === 'queued' ? actionForm('retry', 'Retry', 'secondary') : null}
    ${m.state === 'queued' ? actionForm('cancel', 'Cancel', 'danger') : null}
  </div>
</div>
<div class="card">
  <h2>Headers as sent</h2>
  <dl class="facts">
    <dt>State</dt><dd>${stateCell(m)}</dd>
    <dt>From (given)</dt><dd>${m.from}</dd>
    <dt>From (sent)</dt><dd>${m.effectiveFrom ?? html`<span class="muted">not sent yet; routing would send ${route.from ?? '—'}</span>`}</dd>
    <dt>Reply-To</dt><dd>${mail.reply_to ?? route.replyTo ?? html`<span class="muted">none</span>`}</dd>
    <dt>Envelope sender</dt><dd>${m.envelopeFrom ?? html`<span class="muted">not sent yet; routing would use ${route.envelopeFrom ?? '—'}</span>`}</dd>
    <dt>To</dt><dd>${m.to.join(', ')}</dd>
    ${m.cc.length ? html`<dt>Cc</dt><dd>${m.cc.join(', ')}</dd>` : null}
    ${m.bcc.length ? html`<dt>Bcc</dt><dd>${m.bcc.join(', ')}</dd>` : null}
    ${m.envelopeTo ? html`<dt>Sent only to</dt><dd>${m.envelopeTo.join(', ')} <span class="muted">(the recipients ${m.followUpOf === null ? 'its original mail' : html`<a href="/outbox/${m.followUpOf}">mail ${m.followUpOf}</a>`} could not deliver to yet: its server deferred them)</span></dd>` : null}
    ${followUps.map((f) => html`<dt>Deferred</dt><dd>${(JSON.parse(f.envelope_to ?? '[]') as string[]).join(', ')}: retried in <a href="/outbox/${f.id}">mail ${f.id}</a> (${f.state})</dd>`)}
    <dt>Message-ID</dt><dd><code>${m.messageId}</code></dd>
    <dt>Queued</dt><dd>${when(m.createdAt)}</dd>
  </dl>
</div>
<div class="card">
  <h2>Server and why</h2>
  <p>${serverName ? html`Sent through <strong>${serverName}</strong>.` : route.ok ? html`Routing chooses <strong>${route.serverName}</strong> (rule ${route.rule}).` : html`<span class="error-text">${route.reason}</span>`}</p>
  ${ctx.user?.role === 'admin'
    ? html`<ul class="explanation">${route.explanation.map((line) => html`<li>${line}</li>`)}</ul>
  ${route.warnings.map((w) => html`<p class="flash flash-warning">${w}</p>`)}`
    : null}
</div>
<div class="card">
  <h2>Attempts</h2>
  <dl class="facts">
    <dt>Attempts</dt><dd>${m.attempts}</dd>
    ${m.smtpResponse ? html`<dt>Server's reply</dt><dd><code>${m.smtpResponse}</code></dd>` : null}
    ${m.failureReason ? html`<dt>Reason</dt><dd>${m.failureType ? html`<strong>${m.failureType}</strong>: ` : null}${m.failureReason}</dd>` : null}
    ${m.waitingReason && m.state === 'queued' ? html`<dt>Waiting</dt><dd>${m.waitingReason}</dd>` : null}
    ${m.rejectedRecipients.map((r) => html`<dt>Refused</dt><dd>${r.address}: <code>${r.response}</code></dd>`)}
    ${m.sentAt ? html`<dt>Sent</dt><dd>${when(m.sentAt)}</dd>` : null}
    ${m.bouncedAt ? html`<dt>Bounced</dt><dd>${when(m.bouncedAt)}${m.bounceReason ? `: ${m.bounceReason}` : ''}</dd>` : null}
  </dl>
  ${attempts.length
    ? html`<table class="attempts"><thead><tr><th>When</th><th>Server</th><th>Outcome</th><th>Reply and reason</th></tr></thead><tbody>
    ${attempts.map(
      (a) => html`<tr><td class="nowrap">${when(new Date(a.at).toISOString())}</td><td>${a.server_id === null ? '—' : (names.get(a.server_id) ?? `#${a.server_id}`)}</td>
      <td>${a.outcome === 'failed' ? html`<span class="tag tag-red">failed</span>` : html`<span class="tag tag-amber">retried</span>`}</td>
      <td>${a.failure_type ? html`<strong>${a.failure_type}</strong>: ` : null}${a.reason ?? ''}</td></tr>`,
    )}</tbody></table>`
    : null}
</div>`;
}

export function outboxPage(services: Pick<Services, 'outbox' | 'outgoingServers' | 'parameters' | 'queue'>): FastifyPluginAsync {
  const { queue, outbox, outgoingServers } = services;

  async function loadReadable(request: FastifyRequest<{ Params: { id: string } }>): Promise<OutgoingMail> {
    const { id } = parseInput(idParams, request.params, 'path');
    const mail = await queue.get(id);
    const user = request.principal!.user;
    if (user.role !== 'admin' && mail.created_by_user_id !== user.id) throw new AppError('JUNIPER_ERR_NOT_FOUND', `No outgoing mail with id ${id}.`);
    return mail;
  }

  return async (app) => {
    app.get('/outbox', { config: { access: 'user' } }, async (request, reply) => {
      const q = parseInput(listQuery, request.query, 'filter');
      const user = request.principal!.user;
      const admin = user.role === 'admin';
      const [rows, servers, counts] = await Promise.all([
        queue.list({ state: q.state, serverId: q.serverId, beforeId: q.before, limit: PAGE_SIZE, createdByUserId: admin ? undefined : user.id }),
        outgoingServers.list({ includeArchived: true, ownerUserId: admin ? undefined : user.id }),
        admin ? queue.countByState() : null,
      ]);
      const ctx = pageContext(request, reply, 'outbox');
      const choices = servers.map((s) => ({ id: s.id, name: s.name, archived: s.archived_at !== null }));
      const byId = await reasonServers(outgoingServers, rows);
      return renderPage(reply, 'Outbox', outboxBody(ctx, rows.map((m) => mailViewFor(user, m, byId)), q, choices, counts), ctx);
    });

    app.get<{ Params: { id: string } }>('/outbox/:id', { config: { access: 'user' } }, async (request, reply) => {
      const mail = await loadReadable(request);
      const [route, server, attempts, servers, followUps] = await Promise.all([
        explainRoute(
          { from: mail.from_header, massMailing: mail.mass_mailing === 1, forcedServerId: mail.forced_server_id, createdByUserId: mail.created_by_user_id },
          { servers: outgoingServers, parameters: services.parameters },
        ),
        mail.server_id === null ? null : outgoingServers.get(mail.server_id),
        queue.attemptsOf(mail.id),
        outgoingServers.list({ includeArchived: true }),
        queue.followUpsOf(mail.id),
      ]);
      const ctx = pageContext(request, reply, 'outbox');
      const names = new Map(servers.map((s) => [s.id, s.name]));
      // The same rule as the API's (mail-views.ts): what the mail's servers said, in full only to those who may read it.
      const viewer = request.principal!.user;
      const byId = new Map(servers.map((s) => [s.id, s]));
      const view = mailViewFor(viewer, mail, byId);
      const history = attempts.map((a) => attemptViewFor(viewer, a, byId));
      return renderPage(reply, `Mail ${mail.id}`, mailBody(ctx, mail, view, server?.name ?? null, route, history, names, followUps), ctx);
    });

    app.post<{ Params: { id: string }; Body: Form }>('/outbox/:id/retry', { config: { access: 'user' } }, async (request, reply) => {
      const mail = await loadReadable(request);
      const back = safeBack(text(request.body, 'back'));
      try {
        await queue.retry(mail.id);
      } catch (e) {
        return redirectWithFlash(reply, back, { kind: 'error', text: formError(e).message });
      }
      outbox.wake();
      return redirectWithFlash(reply, back, { kind: 'success', text: `Mail ${mail.id} is queued to be sent again.` });
    });

    app.post<{ Params: { id: string }; Body: Form }>('/outbox/:id/cancel', { config: { access: 'user' } }, async (request, reply) => {
      const mail = await loadReadable(request);
      const back = safeBack(text(request.body, 'back'));
      try {
        await queue.cancel(mail.id);
      } catch (e) {
        // Typically the dispatcher took or sent it meanwhile: say so on the list rather than on an error page.
        return redirectWithFlash(reply, back, { kind: 'error', text: formError(e).message });
      }
      return redirectWithFlash(reply, back, { kind: 'success', text: `Mail ${mail.id} cancelled.` });
    });
  };
}
