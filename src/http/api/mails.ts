import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Services } from '../../services.js';
import type { OutgoingMail } from '../../db/schema.js';
import { AppError } from '../../lib/errors.js';
import { parseInput } from '../../lib/validate.js';
import { MAX_BATCH } from '../../outgoing/outbox.js';
import { mailViewFor, reasonServers } from '../../outgoing/mail-views.js';
import type { MailView } from '../../outgoing/queue.js';
import { actorOf } from '../actor.js';
import { BATCH_BODY_LIMIT, MAIL_BODY_LIMIT, mailBodyHooks } from '../body-limits.js';

export const idParams = z.object({ id: z.coerce.number().int().positive() });
export const listQuery = z.object({
  state: z.enum(['queued', 'sending', 'sent', 'failed', 'cancelled']).optional(),
  serverId: z.coerce.number().int().positive().optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
  before: z.coerce.number().int().positive().optional(),
});

export const batchBody = z.object({ mails: z.array(z.unknown()).min(1, 'give at least one mail').max(MAX_BATCH, `a batch holds at most ${MAX_BATCH} mails: split it`) }).strict();

/** Admins see every mail; users only those they enqueued. */
function assertMayRead(request: FastifyRequest, mail: OutgoingMail): void {
  const user = request.principal!.user;
  if (user.role !== 'admin' && mail.created_by_user_id !== user.id) throw new AppError('JUNIPER_ERR_NOT_FOUND', `No outgoing mail with id ${mail.id}.`);
}

/** The mails as this caller may see them (mail-views.ts: who reads worker names and the servers' own words). */
async function viewsFor(request: FastifyRequest, servers: Pick<Services['outgoingServers'], 'namesAndOwners'>, mails: readonly OutgoingMail[]): Promise<MailView[]> {
  const byId = await reasonServers(servers, mails);
  return mails.map((mail) => mailViewFor(request.principal!.user, mail, byId));
}

export function mailRoutes(services: Pick<Services, 'queue' | 'outbox' | 'outgoingServers' | 'parameters'>): FastifyPluginAsync {
  const { queue, outbox, outgoingServers, parameters } = services;
  const viewOf = async (request: FastifyRequest, mail: OutgoingMail) => (await viewsFor(request, outgoingServers, [mail]))[0]!;
  const { oneMail, batch } = mailBodyHooks(parameters);
  return async (app) => {
    app.post('/api/v1/mails', { config: { access: 'user' }, bodyLimit: MAIL_BODY_LIMIT, preParsing: oneMail }, async (request, reply) => {
      const key = request.headers['idempotency-key'];
      const result = await outbox.enqueue(request.body as never, request.principal!.user, actorOf(request), typeof key === 'string' ? key : undefined);
      return reply.status(202).send(result);
    });

    // Up to 1,000 mails in one transaction; 200 with one result per mail, in order (status 202 with id and
    // messageId, or the mail's own error status and error), so one refused mail does not hide the others.
    app.post('/api/v1/mails/batch', { config: { access: 'user' }, bodyLimit: BATCH_BODY_LIMIT, preParsing: batch }, async (request) => {
      const { mails } = parseInput(batchBody, request.body, 'body');
      const results = await outbox.enqueueMany(mails as never[], request.principal!.user, actorOf(request));
      return { queued: results.filter((r) => r.status === 202).length, refused: results.filter((r) => r.status !== 202).length, results };
    });

    app.get('/api/v1/mails', { config: { access: 'user' } }, async (request) => {
      const q = parseInput(listQuery, request.query, 'query');
      const user = request.principal!.user;
      const rows = await queue.list({ state: q.state, serverId: q.serverId, limit: q.limit, beforeId: q.before, createdByUserId: user.role === 'admin' ? undefined : user.id });
      return viewsFor(request, outgoingServers, rows);
    });

    app.get('/api/v1/mails/:id', { config: { access: 'user' } }, async (request) => {
      const { id } = parseInput(idParams, request.params, 'path');
      const mail = await queue.get(id);
      assertMayRead(request, mail);
      return viewOf(request, mail);
    });

    app.post('/api/v1/mails/:id/retry', { config: { access: 'user' } }, async (request) => {
      const { id } = parseInput(idParams, request.params, 'path');
      assertMayRead(request, await queue.get(id));
      const mail = await viewOf(request, await queue.retry(id));
      outbox.wake();
      return mail;
    });

    app.post('/api/v1/mails/:id/cancel', { config: { access: 'user' } }, async (request) => {
      const { id } = parseInput(idParams, request.params, 'path');
      assertMayRead(request, await queue.get(id));
      return viewOf(request, await queue.cancel(id));
    });
  };
}
