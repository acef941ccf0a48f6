// Webhooks over HTTP, admins only: register (the signing secret is in this one answer only), list, remove,
// see deliveries with their last response, replay one.
import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import type { Services } from '../../services.js';
import { AppError } from '../../lib/errors.js';
import { parseInput } from '../../lib/validate.js';
import { MAX_PASSWORD_CHARS, type PasswordRefusal } from '../../users/sign-in.js';
import { createWebhookSchema } from '../../webhooks/events.js';
import { deliveryView, webhookView } from '../../webhooks/webhooks.js';

export const webhookIdParams = z.object({ id: z.coerce.number().int().positive() });
export const deliveryParams = webhookIdParams.extend({ deliveryId: z.coerce.number().int().positive() });
export const deliveriesQuery = z.object({ limit: z.coerce.number().int().min(1).max(1000).optional() });
export const createWebhookBody = createWebhookSchema.extend({
  currentPassword: z.string().max(MAX_PASSWORD_CHARS).optional().describe("The admin's own password: required with a browser session not confirmed on the Users page in the last 10 minutes"),
});

/**
 * A webhook is a lasting feed of every mailbox's traffic (senders, recipients and subjects of every message
 * received and mail sent) to a URL of the caller's choice, which outlives sign-out and password changes: as for a
 * new user or API key, whoever holds an admin's browser session for a moment must not set one up without the
 * password (hostile review 16). A caller with an API key holds a lasting credential already.
 */
function refusal(r: PasswordRefusal): AppError {
  switch (r.reason) {
    case 'missing':
      return new AppError('JUNIPER_ERR_VALIDATION', 'With a browser session, send your current password as "currentPassword" (or confirm it on the Users page first): a webhook is a lasting feed of all mail traffic. No webhook was registered.', { details: { field: 'currentPassword' } });
    case 'wrong':
      return new AppError('JUNIPER_ERR_FORBIDDEN', '"currentPassword" is not your current password: no webhook was registered.', { details: { field: 'currentPassword' } });
    case 'throttled':
      return new AppError('JUNIPER_ERR_RATE_LIMITED', `No webhook was registered. ${r.message}`);
  }
}

export function webhookRoutes(services: Pick<Services, 'webhooks' | 'signIn'>): FastifyPluginAsync {
  const { webhooks } = services;
  return async (app) => {
    app.get('/api/v1/webhooks', { config: { access: 'admin' } }, async () => (await webhooks.list()).map(webhookView));
    app.post('/api/v1/webhooks', { config: { access: 'admin' } }, async (request, reply) => {
      const { currentPassword, ...input } = parseInput(createWebhookBody, request.body);
      const principal = request.principal!;
      if (principal.via === 'session' && !(principal.session && services.signIn.recent.confirmedUntil(principal.session.id) !== undefined)) {
        const refused = await services.signIn.confirm(principal.user.login, currentPassword ?? '', request.ip);
        if (refused) throw refusal(refused);
      }
      const { webhook, secret } = await webhooks.create(input, principal.user.id);
      return reply.status(201).send({ ...webhookView(webhook), secret });
    });
    app.get('/api/v1/webhooks/:id', { config: { access: 'admin' } }, async (request) => {
      const { id } = parseInput(webhookIdParams, request.params, 'path');
      return webhookView(await webhooks.get(id));
    });
    app.delete('/api/v1/webhooks/:id', { config: { access: 'admin' } }, async (request) => {
      const { id } = parseInput(webhookIdParams, request.params, 'path');
      return webhookView(await webhooks.remove(id));
    });
    app.get('/api/v1/webhooks/:id/deliveries', { config: { access: 'admin' } }, async (request) => {
      const { id } = parseInput(webhookIdParams, request.params, 'path');
      const { limit } = parseInput(deliveriesQuery, request.query, 'query');
      return (await webhooks.deliveries(id, limit)).map(deliveryView);
    });
    app.post('/api/v1/webhooks/:id/deliveries/:deliveryId/replay', { config: { access: 'admin' } }, async (request) => {
      const { id, deliveryId } = parseInput(deliveryParams, request.params, 'path');
      return deliveryView(await webhooks.replay(id, deliveryId));
    });
  };
}
