// Webhooks over HTTP, admins only: register (the signing secret is in this one answer only), list, remove,
// see deliveries with their last response, replay one.
import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import type { Services } from '../../services.js';
import { parseInput } from '../../lib/validate.js';
import { createWebhookSchema } from '../../webhooks/events.js';
import { deliveryView, webhookView } from '../../webhooks/webhooks.js';

export const webhookIdParams = z.object({ id: z.coerce.number().int().positive() });
export const deliveryParams = webhookIdParams.extend({ deliveryId: z.coerce.number().int().positive() });
export const deliveriesQuery = z.object({ limit: z.coerce.number().int().min(1).max(1000).optional() });

export function webhookRoutes(services: Pick<Services, 'webhooks'>): FastifyPluginAsync {
  const { webhooks } = services;
  return async (app) => {
    app.get('/api/v1/webhooks', { config: { access: 'admin' } }, async () => (await webhooks.list()).map(webhookView));
    app.post('/api/v1/webhooks', { config: { access: 'admin' } }, async (request, reply) => {
      const input = parseInput(createWebhookSchema, request.body);
      const { webhook, secret } = await webhooks.create(input, request.principal!.user.id);
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
