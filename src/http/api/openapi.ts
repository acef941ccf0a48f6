// GET /api/v1/openapi.json (built once from the route table and the catalogue, when first asked) and the
// browsable page. Public: the description holds no data, and client generators fetch it without a key.
import type { FastifyPluginAsync } from 'fastify';
import { buildOpenApi } from '../../openapi/document.js';
import { DOCS_HTML, DOCS_JS } from '../../openapi/docs-page.js';
import { operations } from '../../openapi/operations.js';

export const API_VERSION = '1.0.0';

export const openApiRoutes: FastifyPluginAsync = async (app) => {
  let cached: string | undefined;
  app.get('/api/v1/openapi.json', { config: { access: 'public' } }, async (_request, reply) => {
    cached ??= JSON.stringify(buildOpenApi(app.declaredRoutes, operations, API_VERSION).document);
    return reply.type('application/json; charset=utf-8').send(cached);
  });
  app.get('/api/v1/docs', { config: { access: 'public' } }, async (_request, reply) => reply.type('text/html; charset=utf-8').send(DOCS_HTML));
  app.get('/api/v1/docs/docs.js', { config: { access: 'public' } }, async (_request, reply) => reply.type('text/javascript; charset=utf-8').send(DOCS_JS));
};
