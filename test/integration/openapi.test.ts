// The OpenAPI description (issue 11): built from the live route table and the zod schemas the handlers
// validate with. Every /api route is in it, no entry names a route that is gone, every path parameter is
// described, and what it says about an id is what the API enforces. SQLite: the description involves no SQL.
import assert from 'node:assert/strict';
import vm from 'node:vm';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { buildOpenApi, operationKey } from '../../src/openapi/document.js';
import { operations } from '../../src/openapi/operations.js';
import { enqueueSchema } from '../../src/outgoing/enqueue-rules.js';
import { startTestApp, type TestApp } from '../helpers/app.js';

interface Op {
  parameters?: { name: string; in: string; required: boolean; schema: Record<string, unknown> }[];
  requestBody?: { content: { 'application/json': { schema: Record<string, unknown> } } };
  security: unknown[];
  responses: Record<string, unknown>;
}
type Doc = { openapi: string; paths: Record<string, Record<string, Op>> };

describe('OpenAPI description', () => {
  let t: TestApp;
  let http: FastifyInstance;
  let doc: Doc;
  let key: string;
  before(async () => {
    t = await startTestApp('sqlite');
    http = await t.app.http();
    key = (await t.createUser('admin', 'admin')).apiKey;
    const res = await http.inject({ url: '/api/v1/openapi.json' });
    assert.equal(res.statusCode, 200);
    doc = res.json<Doc>();
  });
  after(async () => t.close());

  it('describes every /api route of the route table, and the catalogue names no route that is gone', () => {
    const built = buildOpenApi(http.declaredRoutes, operations, 'test');
    assert.deepEqual(built.undocumented, [], 'routes missing from src/openapi/operations.ts');
    assert.deepEqual(built.stale, [], 'entries of src/openapi/operations.ts without a route');
    assert.equal(doc.openapi, '3.0.3');
    const apiRoutes = http.declaredRoutes.filter((r) => r.url.startsWith('/api/') && r.method !== 'HEAD');
    assert.ok(apiRoutes.length >= 40, `${apiRoutes.length} routes`);
    for (const r of apiRoutes) {
      const [method, path] = operationKey(r.method, r.url).split(' ') as [string, string];
      const op = doc.paths[path]?.[method.toLowerCase()];
      assert.ok(op, `${method} ${path} is not in the document`);
      assert.equal(op.security.length === 0, r.access === 'public', `${method} ${path}: security follows access ${r.access}`);
    }
  });

  it('describes each path parameter of every templated path', () => {
    for (const [path, methods] of Object.entries(doc.paths)) {
      const names = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
      for (const [method, op] of Object.entries(methods)) {
        const described = (op.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name);
        assert.deepEqual(described.sort(), [...names].sort(), `${method.toUpperCase()} ${path}`);
      }
    }
  });

  it('gives a request body the schema the handler validates with, converted by zod', () => {
    const body = doc.paths['/api/v1/mails']!.post!.requestBody!.content['application/json'].schema;
    assert.deepEqual(body, JSON.parse(JSON.stringify(z.toJSONSchema(enqueueSchema, { target: 'openapi-3.0', io: 'input', unrepresentable: 'any' }))));
    assert.deepEqual((body.properties as Record<string, { maxItems?: number }>).to!.maxItems, 1000);
  });

  it('says what PUT /api/v1/settings answers besides the settings: the credentials check', () => {
    const ok = doc.paths['/api/v1/settings']!.put!.responses['200'] as { description: string };
    assert.match(ok.description, /credentialsCheck: \{ result: 'ok' \| 'failed' \| 'skipped', code\?, message \}/);
  });

  it('says ids are positive integers, and the API refuses a path id that is not one with a validation error', async () => {
    for (const [path, methods] of Object.entries(doc.paths)) {
      if (!path.includes('{id}')) continue;
      for (const [method, op] of Object.entries(methods)) {
        const id = op.parameters!.find((p) => p.name === 'id')!;
        assert.equal(id.schema.type, 'integer', `${method} ${path}`);
        const res = await http.inject({ method: method.toUpperCase() as 'GET', url: path.replace('{id}', 'zero').replace('{attachmentId}', '1'), headers: { authorization: `Bearer ${key}` }, payload: method === 'get' || method === 'delete' ? undefined : {} });
        assert.equal(res.statusCode, 400, `${method.toUpperCase()} ${path}: ${res.body}`);
        assert.equal(res.json<{ error: { code: string } }>().error.code, 'JUNIPER_ERR_VALIDATION');
      }
    }
  });

  it('serves a browsable page with its own script, no CDN and no inline script', async () => {
    const page = await http.inject({ url: '/api/v1/docs' });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.match(page.body, /<script src="\/api\/v1\/docs\/docs\.js" defer><\/script>/);
    assert.doesNotMatch(page.body, /https?:\/\//);
    assert.doesNotMatch(page.body, /<script(?![^>]*\ssrc=)[^>]*>/i);
    const js = await http.inject({ url: '/api/v1/docs/docs.js' });
    assert.equal(js.statusCode, 200);
    assert.match(String(js.headers['content-type']), /^text\/javascript/);
    assert.match(js.body, /fetch\('\/api\/v1\/openapi\.json'\)/);
    assert.doesNotThrow(() => new vm.Script(js.body), 'the page script parses');
  });
});
