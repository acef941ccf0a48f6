// Builds the OpenAPI 3.0 document from the live route table (every route, with who may call it) and the
// operations catalogue (operations.ts: summaries and the zod schemas the handlers validate with), converted
// by zod's own z.toJSONSchema. Nothing here is written by hand per route.
import { z } from 'zod';
import type { Access } from '../http/access.js';
import type { Operation } from './operations.js';

export interface RouteEntry {
  method: string;
  url: string;
  access: Access;
}

type JsonSchema = Record<string, unknown>;

const toSchema = (schema: z.ZodType): JsonSchema =>
  // io 'input': what a client sends (before coercion and defaults); unrepresentable 'any' for transforms.
  z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input', unrepresentable: 'any' });

/** `/api/v1/mails/:id` → `/api/v1/mails/{id}` (OpenAPI's path template). */
export const openApiPath = (url: string) => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
export const operationKey = (method: string, url: string) => `${method.toUpperCase()} ${openApiPath(url)}`;

function parametersOf(where: 'path' | 'query', schema: z.ZodObject | undefined): JsonSchema[] {
  if (!schema) return [];
  const json = toSchema(schema) as { properties?: Record<string, JsonSchema>; required?: string[] };
  return Object.entries(json.properties ?? {}).map(([name, s]) => ({ name, in: where, required: where === 'path' || (json.required ?? []).includes(name), schema: s }));
}

const errorResponse = { description: 'An error: { error: { code, message, field? } } (codes in docs/errors.md; field names the input at fault, when one is)', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };

const accessNote: Record<Access, string> = { public: 'Anyone.', user: 'Signed-in users (their own objects; admins all).', admin: 'Admins only.' };

export interface BuiltDocument {
  document: JsonSchema;
  /** /api routes of the table without an entry in the catalogue (openapi.test.ts keeps this empty). */
  undocumented: string[];
  /** Catalogue entries that name no route. */
  stale: string[];
}

export function buildOpenApi(routes: readonly RouteEntry[], catalogue: Record<string, Operation>, version: string): BuiltDocument {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  const undocumented: string[] = [];
  const seen = new Set<string>();
  for (const route of routes) {
    for (const method of route.method.split(',')) {
      if (method === 'HEAD') continue;
      const key = operationKey(method, route.url);
      const op = catalogue[key];
      if (!op) {
        // Web pages are not API; every /api route must be described.
        if (route.url.startsWith('/api/')) undocumented.push(key);
        continue;
      }
      seen.add(key);
      const ok = op.ok ?? { status: 200, description: 'OK' };
      const parameters = [
        ...parametersOf('path', op.params),
        ...parametersOf('query', op.query),
        ...(op.headers ?? []).map((h) => ({ name: h.name, in: 'header', required: false, description: h.description, schema: { type: 'string' } })),
      ];
      (paths[openApiPath(route.url)] ??= {})[method.toLowerCase()] = {
        summary: op.summary,
        description: accessNote[route.access],
        tags: [op.tag],
        operationId: key.replace(/[^A-Za-z0-9]+/g, '_').replace(/_$/, ''),
        ...(parameters.length ? { parameters } : {}),
        ...(op.body ? { requestBody: { required: true, content: { 'application/json': { schema: toSchema(op.body) } } } } : {}),
        security: route.access === 'public' ? [] : [{ bearerAuth: [] }, { sessionCookie: [] }],
        responses: {
          [String(ok.status)]: ok.status === 204 ? { description: ok.description } : { description: ok.description, content: { [ok.contentType ?? 'application/json']: { schema: {} } } },
          default: errorResponse,
        },
      };
    }
  }
  const stale = Object.keys(catalogue).filter((k) => !seen.has(k));
  const document = {
    openapi: '3.0.3',
    info: { title: 'Juniper API', version, description: 'The Juniper mail gateway REST API. JSON in and out; errors are { error: { code, message, field? } }.' },
    servers: [{ url: '/' }],
    components: {
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', description: 'An API key: `juniper api-keys create` or POST /api/v1/api-keys' },
        sessionCookie: { type: 'apiKey', in: 'cookie', name: 'juniper_session', description: 'The browser session (POST /api/v1/session); state-changing requests also send x-csrf-token' },
      },
      schemas: {
        Error: { type: 'object', required: ['error'], properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' }, field: { type: 'string', description: 'The body field (a dotted path such as mails.3.to) or header at fault, when the error is about one input' } } } } },
      },
    },
    paths,
  };
  return { document, undocumented, stale };
}
