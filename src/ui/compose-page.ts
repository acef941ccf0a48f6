// Compose (to, cc, subject, body, attachments), "Send a test mail" of an outgoing server, and reply / forward
// from the Inbox. Every mail goes through Outbox.enqueue, as POST /api/v1/mails does: the same checks (a user
// sends only as their own address), the queue, and routing (or the server a test mail names).
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Services } from '../services.js';
import type { PrincipalUser } from '../http/access.js';
import { actorOf } from '../http/actor.js';
import { formatMailbox } from '../lib/address.js';
import { AppError } from '../lib/errors.js';
import { parseInput } from '../lib/validate.js';
import type { EnqueueInput } from '../outgoing/enqueue-rules.js';
import { replyReferences } from '../outgoing/header-rules.js';
import { assertMayManage } from '../outgoing/servers.js';
import { csrfField, formError, pageContext, redirectWithFlash, renderPage, text, type Form } from './forms.js';
import { MAIL_BODY_LIMIT, mailBodyHooks } from '../http/body-limits.js';
import { html, type SafeHtml } from './html.js';
import { flashHtml, type PageContext } from './layout.js';

const composeQuery = z.object({
  serverId: z.coerce.number().int().positive().optional(),
  reply: z.coerce.number().int().positive().optional(),
  forward: z.coerce.number().int().positive().optional(),
});

interface ComposeForm {
  from: string;
  to: string;
  cc: string;
  subject: string;
  text: string;
  serverId: string;
  inReplyTo: string;
  references: string;
  /** The received message whose attachments a forward carries ('' when none). */
  forward: string;
}

const attachmentsSchema = z.array(z.object({ filename: z.string(), contentType: z.string(), contentBase64: z.string() })).max(100);

export const ownAddress = (user: PrincipalUser): string => formatMailbox({ name: user.name, address: user.email });

/** "a@x, b@y" → ["a@x", "b@y"]; a comma inside a quoted display name stays. */
export function addressesOf(field: string): string[] {
  return (field.match(/(?:"[^"]*"|[^,])+/g) ?? []).map((a) => a.trim()).filter((a) => a !== '');
}

function quote(body: string | null): string {
  return (body ?? '').split(/\r?\n/).map((l) => `> ${l}`).join('\n');
}

function composeBody(ctx: PageContext, f: ComposeForm, opts: { heading: string; serverName?: string; error?: string; forwarded?: string[] }): SafeHtml {
  const admin = ctx.user?.role === 'admin';
  return html`<p class="muted"><a href="/outbox">Outbox</a> /</p>
<div class="page-head"><h1>${opts.heading}</h1></div>
${opts.error ? flashHtml({ kind: 'error', text: opts.error }) : null}
<form method="post" action="/compose" class="card" id="compose-form" data-attachments="attachments-json">
  ${csrfField(ctx)}
  <input type="hidden" name="serverId" value="${f.serverId}">
  <input type="hidden" name="inReplyTo" value="${f.inReplyTo}">
  <input type="hidden" name="references" value="${f.references}">
  <input type="hidden" name="forward" value="${f.forward}">
  <input type="hidden" name="attachments" id="attachments-json" value="">
  ${opts.serverName
    ? html`<p class="flash flash-warning" role="status">Sent through ${opts.serverName} whatever the routing rules say: this tests that server.</p>`
    : html`<p class="help">Routed like any mail: the first server whose From Filter admits the From (see the <a href="/route">Route checker</a>).</p>`}
  <label for="from">From</label>
  <input type="text" id="from" name="from" value="${f.from}" required spellcheck="false"${admin ? null : html` readonly aria-describedby="from-help"`}>
  ${admin ? null : html`<p class="help" id="from-help">You send as your own address.</p>`}
  <label for="to">To</label>
  <input type="text" id="to" name="to" value="${f.to}" required spellcheck="false" placeholder="someone@example.com, other@example.com" aria-describedby="to-help">
  <p class="help" id="to-help">Comma-separated addresses.</p>
  <label for="cc">Cc</label>
  <input type="text" id="cc" name="cc" value="${f.cc}" spellcheck="false">
  <label for="subject">Subject</label>
  <input type="text" id="subject" name="subject" value="${f.subject}">
  <label for="text">Message</label>
  <textarea id="text" name="text" rows="10">${f.text}</textarea>
  ${opts.forwarded?.length ? html`<p class="help" id="forwarded">Forwarded with its attachments: ${opts.forwarded.join(', ')}</p>` : null}
  <label for="files">Attachments</label>
  <input type="file" id="files" multiple aria-describedby="files-help">
  <p class="help" id="files-help">Added to the mail when you click Send (needs JavaScript).</p>
  <div class="actions form-actions"><button type="submit">Send</button><a class="button secondary" href="/outbox">Cancel</a></div>
</form>`;
}

const viewerOf = (user: PrincipalUser) => ({ userId: user.id, admin: user.role === 'admin' });

export function composePage(services: Pick<Services, 'messages' | 'outbox' | 'outgoingServers' | 'parameters'>): FastifyPluginAsync {
  const { outbox, outgoingServers, messages, parameters } = services;
  const { oneMail } = mailBodyHooks(parameters);

  async function forwardedAttachments(messageId: number, viewer: { userId: number; admin: boolean }): Promise<z.output<typeof attachmentsSchema>> {
    const kept = (await messages.detail(viewer, messageId)).attachments.filter((a) => a.url !== null);
    return Promise.all(
      kept.map(async (a) => {
        const { filename, contentType, content } = await messages.attachment(viewer, messageId, a.id);
        return { filename, contentType, contentBase64: content.toString('base64') };
      }),
    );
  }

  async function render(request: FastifyRequest, reply: FastifyReply, f: ComposeForm, error?: string, status = 200) {
    const ctx = pageContext(request, reply, 'compose');
    let serverName: string | undefined;
    if (f.serverId !== '') {
      // Named only when the user may manage it: an error page must not tell the name of someone else's server.
      try {
        const server = await outgoingServers.get(Number(f.serverId));
        assertMayManage(request.principal!.user, server);
        serverName = server.name;
      } catch (e) {
        if (!(e instanceof AppError)) throw e;
        f.serverId = '';
      }
    }
    const forwarded = f.forward === '' ? [] : (await messages.detail(viewerOf(request.principal!.user), Number(f.forward))).attachments.filter((a) => a.url !== null).map((a) => a.filename);
    const heading = serverName ? `Send a test mail through ${serverName}` : f.inReplyTo ? 'Reply' : f.forward ? 'Forward' : 'New mail';
    return renderPage(reply, heading, composeBody(ctx, f, { heading, serverName, error, forwarded }), ctx, status);
  }

  return async (app) => {
    app.get('/compose', { config: { access: 'user' } }, async (request, reply) => {
      const q = parseInput(composeQuery, request.query, 'query');
      const user = request.principal!.user;
      const viewer = viewerOf(user);
      const f: ComposeForm = { from: ownAddress(user), to: '', cc: '', subject: '', text: '', serverId: '', inReplyTo: '', references: '', forward: '' };
      if (q.serverId !== undefined) {
        const server = await outgoingServers.get(q.serverId);
        assertMayManage(user, server);
        // From: an address the server may send as (an admin's test of a mailbox sends as that mailbox); a user
        // tests their personal server, whose filter is their own address.
        const mailbox = server.auth === 'outlook' && server.username ? server.username : null;
        Object.assign(f, {
          serverId: String(server.id),
          ...(user.role === 'admin' && mailbox ? { from: mailbox } : {}),
          to: user.email,
          subject: `Juniper test mail through ${server.name}`,
          text: `This mail was sent through the outgoing mail server "${server.name}" (${server.host}:${server.port}) to check that it delivers.`,
        });
      }
      const source = q.reply ?? q.forward;
      if (source !== undefined) {
        const m = await messages.detail(viewer, source);
        const subject = m.subject ?? '';
        if (q.reply !== undefined) {
          Object.assign(f, {
            to: m.from ?? '',
            subject: /^re:/i.test(subject) ? subject : `Re: ${subject}`,
            text: `\n\n${m.from ?? 'The sender'} wrote:\n${quote(m.text)}`,
            inReplyTo: m.messageId ?? '',
            references: replyReferences([...m.references, ...(m.messageId ? [m.messageId] : [])]),
          });
        } else {
          Object.assign(f, {
            subject: /^fwd?:/i.test(subject) ? subject : `Fwd: ${subject}`,
            forward: String(m.id),
            text: `\n\n---------- Forwarded message ----------\nFrom: ${m.from ?? ''}\nSubject: ${subject}\nTo: ${m.to.join(', ')}\n\n${m.text ?? ''}`,
          });
        }
      }
      return render(request, reply, f);
    });

    // Attachments arrive base64 in a form field: a mail's size.
    app.post<{ Body: Form }>('/compose', { config: { access: 'user' }, bodyLimit: MAIL_BODY_LIMIT, preParsing: oneMail }, async (request, reply) => {
      const body = request.body ?? {};
      const user = request.principal!.user;
      const f: ComposeForm = {
        // A user's From is their own address whatever was posted (the enqueue check would refuse another).
        from: user.role === 'admin' ? text(body, 'from').trim() : ownAddress(user),
        to: text(body, 'to'),
        cc: text(body, 'cc'),
        subject: text(body, 'subject'),
        text: text(body, 'text'),
        serverId: text(body, 'serverId'),
        inReplyTo: text(body, 'inReplyTo'),
        references: text(body, 'references'),
        forward: /^\d+$/.test(text(body, 'forward')) ? text(body, 'forward') : '',
      };
      let id: number;
      try {
        if (f.serverId !== '') assertMayManage(user, await outgoingServers.get(Number(f.serverId)));
        const rawAttachments = text(body, 'attachments');
        let attachments: z.output<typeof attachmentsSchema> = [];
        if (rawAttachments !== '') {
          try {
            attachments = attachmentsSchema.parse(JSON.parse(rawAttachments));
          } catch {
            throw new AppError('JUNIPER_ERR_VALIDATION', 'The attachments could not be read: choose the files again.');
          }
        }
        // A forward carries the received message's kept attachments, read as the sender may see them.
        if (f.forward !== '') attachments = [...(await forwardedAttachments(Number(f.forward), viewerOf(user))), ...attachments];
        const headers: Record<string, string> = {};
        if (f.inReplyTo) headers['In-Reply-To'] = f.inReplyTo;
        if (f.references) headers.References = f.references;
        const input: EnqueueInput = {
          from: f.from,
          to: addressesOf(f.to),
          cc: addressesOf(f.cc),
          subject: f.subject,
          text: f.text,
          headers,
          attachments,
          ...(f.serverId !== '' ? { serverId: Number(f.serverId) } : {}),
        };
        ({ id } = await outbox.enqueue(input, user, actorOf(request)));
      } catch (e) {
        const err = formError(e);
        return render(request, reply, f, err.message, err.status);
      }
      return redirectWithFlash(reply, `/outbox/${id}`, { kind: 'success', text: `Mail ${id} queued. This page shows how it is routed and whether it was sent.` });
    });
  };
}
