// CSRF on every state-changing browser route, generated from the route table: each non-GET route is called
// with the admin's session cookie (who may do everything, so only the CSRF rules can stop it) and without the
// token, with another session's token, and with the right token but a cross-site Origin or Sec-Fetch-Site.
// Each must answer 403 and write nothing (the whole database is compared). Public routes (sign-in, setup) have
// no session to carry a token: they must refuse cross-site posts. Both databases.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { InjectOptions } from 'fastify';
import { dialects } from '../helpers/databases.js';
import { dumpDatabase } from '../helpers/db-dump.js';
import { startWorld, type World } from '../helpers/world.js';

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The route's URL with real ids; a parameter this does not know fails the test (add it here). */
function concrete(w: World, url: string, mailId: number): string {
  return url.replace(/:(\w+)/g, (_, name: string) => {
    if (name === 'key') return 'mail.catchall.domain';
    if (name === 'name') return 'microsoft_outlook'; // Apps: Install / Uninstall
    if (name === 'attachmentId') return String(w.ids.attachment);
    // Webhooks and jobs: refused before any lookup, so any id serves.
    if (name === 'deliveryId') return '1';
    if (name !== 'id') throw new Error(`csrf.test.ts: no value for :${name} in ${url}`);
    if (url.includes('outgoing-servers')) return String(w.ids.outgoing);
    if (url.includes('incoming-servers')) return String(w.ids.incoming);
    if (url.includes('/outbox/') || url.includes('/mails/')) return String(mailId);
    if (url.includes('/messages/') || url.includes('/inbox/')) return String(w.ids.message);
    if (url.includes('/webhooks/') || url.includes('/jobs/')) return '1';
    throw new Error(`csrf.test.ts: no value for :id in ${url}`);
  });
}

function request(method: string, url: string, token: string | null, cookie: string, extra: Record<string, string> = {}): InjectOptions {
  const api = url.startsWith('/api/');
  const headers: Record<string, string> = { cookie, host: 'localhost', ...extra };
  if (token !== null) headers['x-csrf-token'] = token;
  if (api) return { method: method as InjectOptions['method'], url, headers: { ...headers, 'content-type': 'application/json' }, payload: '{}' };
  const form = new URLSearchParams(token === null ? { name: 'x' } : { _csrf: token, name: 'x' });
  return { method: method as InjectOptions['method'], url, headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' }, payload: form.toString() };
}

for (const dialect of dialects) {
  describe(`CSRF on every state-changing route (${dialect})`, () => {
    let w: World;
    let mailId: number;
    before(async () => {
      w = await startWorld(dialect);
      mailId = await w.freshMail(w.jane);
    });
    after(async () => w.close());

    const refusedAndUnchanged = async (label: string, options: InjectOptions) => {
      const before = await dumpDatabase(w.t.app.database.db);
      const res = await w.http.inject(options);
      assert.equal(res.statusCode, 403, `${label}: ${res.statusCode} ${res.body.slice(0, 300)}`);
      assert.deepEqual(await dumpDatabase(w.t.app.database.db), before, `${label} wrote to the database`);
      return res;
    };

    it('covers every state-changing route of the route table', () => {
      const routes = w.http.declaredRoutes.filter((r) => !SAFE.has(r.method));
      assert.ok(routes.length >= 40, `${routes.length} state-changing routes`);
      for (const r of routes) assert.doesNotThrow(() => concrete(w, r.url, mailId), `${r.method} ${r.url}`);
    });

    it('refuses every cookie-authenticated state change without the token, with another session’s token, or from another site', async () => {
      const admin = w.admin.session;
      const other = w.jane.session;
      for (const route of w.http.declaredRoutes.filter((r) => !SAFE.has(r.method) && r.access !== 'public')) {
        const url = concrete(w, route.url, mailId);
        const label = `${route.method} ${route.url}`;
        const none = await refusedAndUnchanged(`${label} without a token`, request(route.method, url, null, admin.cookie));
        if (url.startsWith('/api/')) assert.match(none.body, /JUNIPER_ERR_CSRF/, label);
        await refusedAndUnchanged(`${label} with another session's token`, request(route.method, url, other.csrfToken, admin.cookie));
        await refusedAndUnchanged(`${label} from another Origin`, request(route.method, url, admin.csrfToken, admin.cookie, { origin: 'https://evil.example' }));
        await refusedAndUnchanged(`${label} marked cross-site`, request(route.method, url, admin.csrfToken, admin.cookie, { 'sec-fetch-site': 'cross-site' }));
      }
    });

    it('refuses cross-site posts to the public sign-in and setup routes, which have no session yet', async () => {
      for (const route of w.http.declaredRoutes.filter((r) => !SAFE.has(r.method) && r.access === 'public')) {
        const body = { login: 'jane', password: w.jane.password, token: 'x'.repeat(43), email: 'x@example.com' };
        const api = route.url.startsWith('/api/');
        const base: InjectOptions = api
          ? { method: route.method as InjectOptions['method'], url: route.url, payload: body }
          : { method: route.method as InjectOptions['method'], url: route.url, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams(body).toString() };
        for (const extra of [{ origin: 'https://evil.example' }, { 'sec-fetch-site': 'cross-site' }, { origin: 'null' }]) {
          const res = await refusedAndUnchanged(`${route.method} ${route.url} ${JSON.stringify(extra)}`, { ...base, headers: { ...(base.headers ?? {}), host: 'localhost', ...extra } });
          assert.equal(res.headers['set-cookie'], undefined, 'no session for a cross-site sign-in');
        }
      }
    });

    it('accepts the same requests from Juniper’s own pages with the session’s token (the refusals above are the CSRF rules, not something else)', async () => {
      const admin = w.admin.session;
      const ok = await w.http.inject({ ...request('POST', '/api/v1/api-keys', admin.csrfToken, admin.cookie, { origin: 'http://localhost', 'sec-fetch-site': 'same-origin' }), payload: { name: 'ok', password: w.admin.password } });
      assert.equal(ok.statusCode, 201, ok.body);
      const form = await w.http.inject(request('POST', `/outbox/${await w.freshMail(w.jane)}/cancel`, admin.csrfToken, admin.cookie, { origin: 'http://localhost' }));
      assert.equal(form.statusCode, 303, form.body);
    });
  });
}
