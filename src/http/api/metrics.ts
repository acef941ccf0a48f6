// GET /metrics in the Prometheus text format, for admins only: Prometheus sends an admin's API key
// (`authorization: Bearer jnp_…`, in its scrape config as `authorization.credentials_file`). Metrics name
// servers and show traffic, which is not for every signed-in user.
import type { FastifyPluginAsync } from 'fastify';
import type { MetricsScraper } from '../../metrics/scrape.js';

export function metricsRoutes(scraper: MetricsScraper): FastifyPluginAsync {
  return async (app) => {
    app.get('/metrics', { config: { access: 'admin' }, logLevel: 'warn' }, async (_request, reply) => {
      const { contentType, body } = await scraper.render();
      return reply.header('content-type', contentType).header('cache-control', 'no-store').send(body);
    });
  };
}
