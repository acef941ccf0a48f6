// The Outbox: the outgoing queue with filters by state and server, and Retry / Cancel. Admins see every
// mail, users the mails they enqueued (the same rule as GET /api/v1/mails).
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Services } from '../services.js';
import type { MailState, OutgoingMail } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import { parseInput } from '../lib/validate.js';
import { mailView, type MailView } from '../outgoing/queue.js';
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

function stateCell(m: MailView): SafeHtml {
  const waiting = m.state === 'queued' && m.waitingReason;
  return html`<span class="tag ${waiting ? 'tag-amber' : stateTag[m.state]}">${waiting ? 'waiting' : m.state}</span>
    ${waiting ? html`<span class="sub">${m.waitingReason}</span>` : null}
    ${m.state === 'queued' && m.nextAttemptAt && Date.parse(m.nextAttemptAt) > Date.now() ? html`<span class="sub">next attempt ${when(m.nextAttemptAt)}</span>` : null}
    ${m.sentAt ? html`<span class="sub">${when(m.sentAt)}</span>` : null}`;
}

function row(ctx: PageContext, m: MailView, serverNames: Map<number, string>, back: string): SafeHtml {
  const recipients = [...m.to, ...m.cc, ...m.bcc];
  const actionForm = (verb: 'retry' | 'cancel', label: string, cls: string) =>
    html`<form method="post" action="/outbox/${m.id}/${verb}" class="inline">${csrfField(ctx)}<input type="hidden" name="back" value="${back}"><button type="submit" class="${cls} small">${label}</button></form>`;
  return html`<tr>
  <td class="num">${m.id}</td>
  <td>${stateCell(m)}</td>
  <td class="num">${m.attempts}</td>
  <td>${m.effectiveFrom ?? m.from}<span class="sub">→ ${recipients.slice(0, 3).join(', ')}${recipients.length > 3 ? ` +${recipients.length - 3} more` : ''}</span></td>
  <td>${m.subject || html`<span class="muted">(no subject)</span>`}</td>
  <td>${m.serverId === null ? html`<span class="muted">—</span>` : (serverNames.get(m.serverId) ?? `#${m.serverId}`)}</td>
  <td>${m.failureReason ? html`${m.failureType ? html`<strong>${m.failureType}</strong>: ` : null}${m.failureReason}` : null}</td>
  <td><div class="actions">
    ${m.state === 'failed' || m.state === 'cancelled' || m.state === 'queued' ? actionForm('retry', 'Retry', 'secondary') : null}
    ${m.state === 'queued' ? actionForm('cancel', 'Cancel', 'danger') : null}
  </div></td>
</tr>`;
}

function outboxBody(ctx: PageContext, mails: MailView[], q: ListQuery, servers: { id: number; name: string }[], counts: Record<MailState, number> | null): SafeHtml {
  const names = new Map(servers.map((s) => [s.id, s.name]));
  const back = `/outbox${queryString(q, q.before)}`;
  const last = mails[mails.length - 1];
  return html`<div class="page-head"><h1>Outbox</h1>
  ${counts ? html`<div class="actions">${states.map((s) => html`<span class="tag ${stateTag[s]}">${s} ${counts[s]}</span>`)}</div>` : null}
</div>
<form method="get" action="/outbox" class="card filters">
  <div><label for="state">State</label><select id="state" name="state">
    <option value="">Any state</option>
    ${states.map((s) => html`<option value="${s}"${q.state === s ? html` selected` : null}>${s}</option>`)}
  </select></div>
  <div><label for="serverId">Server</label><select id="serverId" name="serverId">
    <option value="">Any server</option>
    ${servers.map((s) => html`<option value="${s.id}"${q.serverId === s.id ? html` selected` : null}>${s.name}</option>`)}
  </select></div>
  <div><button type="submit" class="secondary">Filter</button></div>
</form>
${mails.length === 0
  ? html`<div class="card"><p class="muted">No mails${q.state || q.serverId !== undefined ? ' match these filters' : ' yet'}.</p></div>`
  : html`<div class="card table-card"><table>
  <thead><tr><th>#</th><th>State</th><th>Attempts</th><th>From → To</th><th>Subject</th><th>Server</th><th>Failure</th><th></th></tr></thead>
  <tbody>${mails.map((m) => row(ctx, m, names, back))}</tbody></table></div>`}
<p class="pager">
  ${q.before !== undefined ? html`<a href="/outbox${queryString(q)}">← Newest</a>` : null}
  ${mails.length === PAGE_SIZE && last ? html` <a href="/outbox${queryString(q, last.id)}">Older →</a>` : null}
</p>`;
}

/** Only back to the outbox itself: the field comes from the browser. */
function safeBack(back: string): string {
  return /^\/outbox(\?[\w=&%.-]*)?$/.test(back) ? back : '/outbox';
}

export function outboxPage(services: Services): FastifyPluginAsync {
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
      return renderPage(reply, 'Outbox', outboxBody(ctx, rows.map(mailView), q, servers, counts), ctx);
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
