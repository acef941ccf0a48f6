// Every /api route × (anonymous, owner, other user, admin) with real requests on real fixtures, generated from
// the route table: a route added without a rule here fails the first test. The owner is jane (her personal
// servers, her mail, the message fetched from her mailbox); the other user is john. A refused request must also
// write nothing: the whole database is compared before and after. Both databases.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { InjectOptions } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import { fetchTarget } from '../../src/jobs/fetch-jobs.js';
import { dialects } from '../helpers/databases.js';
import { dumpDatabase } from '../helpers/db-dump.js';
import { startWorld, type Person, type World } from '../helpers/world.js';

type Role = 'anonymous' | 'owner' | 'other' | 'admin';
const ROLES: readonly Role[] = ['anonymous', 'owner', 'other', 'admin'];
/** A status, several acceptable ones, or 'allowed': past every access rule (routes that connect to a host). */
type Expected = number | readonly number[] | 'allowed';

interface Rule {
  request(w: World, role: Role): InjectOptions | Promise<InjectOptions>;
  expect: Record<Role, Expected>;
  /** For lists: true when the body shows jane's fixture (john's list must not). */
  shows?: (w: World, body: string) => boolean;
}

const NOT_YOURS = [403, 404] as const;
const own = (ok: Expected, request: Rule['request']): Rule => ({ request, expect: { anonymous: 401, owner: ok, other: NOT_YOURS, admin: ok } });
const list = (url: string, shows?: Rule['shows'], setUp?: (w: World) => Promise<unknown>): Rule => ({
  request: async (w) => {
    await setUp?.(w);
    return { method: 'GET', url };
  },
  expect: { anonymous: 401, owner: 200, other: 200, admin: 200 },
  shows,
});
const adminOnly = (ok: number, request: Rule['request']): Rule => ({ request, expect: { anonymous: 401, owner: 403, other: 403, admin: ok } });
const idIn = (id: number) => (body: string) => (JSON.parse(body) as { id: number }[]).some((x) => x.id === id);

let userCounter = 0;

/** A webhook with one delivery (a fresh one when `fresh`, e.g. to delete it). */
async function matrixWebhook(w: World, fresh = false): Promise<{ webhookId: number; deliveryId: number }> {
  const { db } = w.t.app.database;
  const existing = fresh ? undefined : await db.selectFrom('webhook_deliveries').select(['id', 'webhook_id']).where('subject', '=', 'matrix').executeTakeFirst();
  if (existing) return { webhookId: existing.webhook_id, deliveryId: existing.id };
  await w.t.app.services.parameters.set('mail.server.allowed_private_hosts', '127.0.0.1', cliActor);
  const { webhook } = await w.t.app.services.webhooks.create({ url: 'http://127.0.0.1:9/matrix', events: ['mail.sent'], active: false }, null);
  const now = Date.now();
  const d = await db
    .insertInto('webhook_deliveries')
    .values({ webhook_id: webhook.id, event: 'mail.sent', subject: fresh ? `matrix-${now}-${Math.random()}` : 'matrix', payload: '{}', state: 'delivered', next_attempt_at: now, created_at: now })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { webhookId: webhook.id, deliveryId: d.id };
}
const outsideHost = '203.0.113.10';

/** A fresh server of `owner`, archived by the admin: what a restore needs (as archive needs a fresh one). */
async function archivedServer(w: World, kind: 'incoming' | 'outgoing', owner: Person): Promise<number> {
  const id = kind === 'incoming' ? await w.freshIncoming(owner) : await w.freshOutgoing(owner);
  const res = await w.as(w.admin, { method: 'DELETE', url: `/api/v1/${kind}-servers/${id}` });
  assert.equal(res.statusCode, 200, res.body);
  return id;
}

const rules: Record<string, Rule> = {
  'DELETE /api/v1/incoming-servers/:id': own(200, async (w) => ({ method: 'DELETE', url: `/api/v1/incoming-servers/${await w.freshIncoming(w.jane)}` })),
  'DELETE /api/v1/outgoing-servers/:id': own(200, async (w) => ({ method: 'DELETE', url: `/api/v1/outgoing-servers/${await w.freshOutgoing(w.jane)}` })),
  'DELETE /api/v1/parameters/:key': adminOnly(204, async (w) => {
    await w.t.app.services.parameters.set('matrix.key', 'v', cliActor);
    return { method: 'DELETE', url: '/api/v1/parameters/matrix.key' };
  }),
  'DELETE /api/v1/session': { request: () => ({ method: 'DELETE', url: '/api/v1/session' }), expect: { anonymous: 401, owner: 204, other: 204, admin: 204 } },
  'GET /api/v1/api-keys': list('/api/v1/api-keys'),
  'GET /api/v1/jobs/:id': own(200, async (w) => {
    const job = await w.t.app.services.jobs.create({ kind: 'incoming.fetch', target: fetchTarget(w.ids.incoming), owner: 'matrix', createdByUserId: w.jane.id });
    await w.t.app.services.jobs.finish(job.id, { ok: true, result: { fetched: 0, stored: 0, duplicates: 0, quarantined: 0 }, done: 0 });
    return { method: 'GET', url: `/api/v1/jobs/${job.id}` };
  }),
  'GET /api/v1/incoming-servers': list('/api/v1/incoming-servers', (w, b) => idIn(w.ids.incoming)(b)),
  'GET /api/v1/incoming-servers/:id': own(200, (w) => ({ method: 'GET', url: `/api/v1/incoming-servers/${w.ids.incoming}` })),
  'GET /api/v1/mails': list('/api/v1/mails', (w, b) => (JSON.parse(b) as { from: string }[]).some((m) => m.from.includes(w.jane.email)), (w) => w.freshMail(w.jane)),
  'GET /api/v1/mails/:id': own(200, async (w) => ({ method: 'GET', url: `/api/v1/mails/${await w.freshMail(w.jane)}` })),
  'GET /api/v1/messages': list('/api/v1/messages', (w, b) => idIn(w.ids.message)(b)),
  'GET /api/v1/messages/:id': own(200, (w) => ({ method: 'GET', url: `/api/v1/messages/${w.ids.message}` })),
  'GET /api/v1/messages/:id/attachments/:attachmentId': own(200, (w) => ({ method: 'GET', url: `/api/v1/messages/${w.ids.message}/attachments/${w.ids.attachment}` })),
  'GET /api/v1/messages/:id/raw': own(200, (w) => ({ method: 'GET', url: `/api/v1/messages/${w.ids.message}/raw` })),
  'GET /api/v1/outgoing-servers': list('/api/v1/outgoing-servers', (w, b) => idIn(w.ids.outgoing)(b)),
  'GET /api/v1/outgoing-servers/:id': own(200, (w) => ({ method: 'GET', url: `/api/v1/outgoing-servers/${w.ids.outgoing}` })),
  // The API description and its page hold no data: public.
  'GET /api/v1/docs': { request: () => ({ method: 'GET', url: '/api/v1/docs' }), expect: { anonymous: 200, owner: 200, other: 200, admin: 200 } },
  'GET /api/v1/docs/docs.js': { request: () => ({ method: 'GET', url: '/api/v1/docs/docs.js' }), expect: { anonymous: 200, owner: 200, other: 200, admin: 200 } },
  'GET /api/v1/openapi.json': { request: () => ({ method: 'GET', url: '/api/v1/openapi.json' }), expect: { anonymous: 200, owner: 200, other: 200, admin: 200 } },
  'GET /api/v1/parameters': adminOnly(200, () => ({ method: 'GET', url: '/api/v1/parameters' })),
  'GET /api/v1/parameters/:key': adminOnly(200, () => ({ method: 'GET', url: '/api/v1/parameters/web.base.url' })),
  'GET /api/v1/route': adminOnly(200, () => ({ method: 'GET', url: '/api/v1/route?from=jane%40example.com' })),
  'GET /api/v1/session': { request: () => ({ method: 'GET', url: '/api/v1/session' }), expect: { anonymous: 401, owner: 200, other: 200, admin: 200 } },
  'GET /api/v1/settings': adminOnly(200, () => ({ method: 'GET', url: '/api/v1/settings' })),
  'GET /api/v1/threads': list('/api/v1/threads', (w, b) => idIn(w.ids.thread)(b)),
  'GET /api/v1/users': adminOnly(200, () => ({ method: 'GET', url: '/api/v1/users' })),
  'PATCH /api/v1/incoming-servers/:id': own(200, (w) => ({ method: 'PATCH', url: `/api/v1/incoming-servers/${w.ids.incoming}`, payload: { name: 'jane imap' } })),
  'PATCH /api/v1/outgoing-servers/:id': own(200, (w) => ({ method: 'PATCH', url: `/api/v1/outgoing-servers/${w.ids.outgoing}`, payload: { name: 'jane smtp' } })),
  'POST /api/v1/api-keys': { request: () => ({ method: 'POST', url: '/api/v1/api-keys', payload: { name: 'matrix' } }), expect: { anonymous: 401, owner: 201, other: 201, admin: 201 } },
  // john may create servers of his own; here he tries to create one for jane.
  'POST /api/v1/incoming-servers': {
    request: (w) => ({ method: 'POST', url: '/api/v1/incoming-servers', payload: { name: 'new imap', host: outsideHost, port: 993, security: 'ssl', auth: 'password', username: 'jane@example.com', password: 'imap-pw-0123456789', ownerUserId: w.jane.id } }),
    expect: { anonymous: 401, owner: 201, other: 403, admin: 201 },
  },
  // ?wait=true: a fetch left running in the background would write while a later refused request is checked.
  'POST /api/v1/incoming-servers/:id/fetch': own('allowed', (w) => ({ method: 'POST', url: `/api/v1/incoming-servers/${w.ids.incoming}/fetch?wait=true` })),
  'POST /api/v1/incoming-servers/:id/outlook/connect': own(200, (w) => ({ method: 'POST', url: `/api/v1/incoming-servers/${w.ids.incomingOutlook}/outlook/connect` })),
  // As archive: the owner and admins; john's restore of jane's server is refused and writes nothing.
  'POST /api/v1/incoming-servers/:id/restore': own(200, async (w) => ({ method: 'POST', url: `/api/v1/incoming-servers/${await archivedServer(w, 'incoming', w.jane)}/restore` })),
  'POST /api/v1/incoming-servers/:id/test': own('allowed', (w) => ({ method: 'POST', url: `/api/v1/incoming-servers/${w.ids.incoming}/test` })),
  // Users send only as themselves: john sending as jane is refused.
  'POST /api/v1/mails': {
    request: (w) => ({ method: 'POST', url: '/api/v1/mails', payload: { from: w.jane.email, to: ['customer@client.test'], subject: 'matrix', text: 'x' } }),
    expect: { anonymous: 401, owner: 202, other: 403, admin: 202 },
  },
  // A batch answers 200 with a result per mail; john's mail as jane is refused in its item (403), which
  // outgoing-throughput.test.ts asserts item by item.
  'POST /api/v1/mails/batch': {
    request: (w) => ({ method: 'POST', url: '/api/v1/mails/batch', payload: { mails: [{ from: w.jane.email, to: ['customer@client.test'], subject: 'matrix batch', text: 'x' }] } }),
    expect: { anonymous: 401, owner: 200, other: 200, admin: 200 },
  },
  'POST /api/v1/mails/:id/cancel': own(200, async (w) => ({ method: 'POST', url: `/api/v1/mails/${await w.freshMail(w.jane)}/cancel` })),
  'POST /api/v1/mails/:id/retry': own(200, async (w) => ({ method: 'POST', url: `/api/v1/mails/${await w.freshMail(w.jane)}/retry` })),
  'POST /api/v1/outgoing-servers': {
    request: (w) => ({ method: 'POST', url: '/api/v1/outgoing-servers', payload: { name: 'new smtp', host: outsideHost, port: 587, security: 'starttls', auth: 'password', username: 'jane@example.com', password: 'smtp-pw-0123456789', fromFilter: w.jane.email, ownerUserId: w.jane.id } }),
    expect: { anonymous: 401, owner: 201, other: 403, admin: 201 },
  },
  'POST /api/v1/outgoing-servers/:id/outlook/connect': own(200, (w) => ({ method: 'POST', url: `/api/v1/outgoing-servers/${w.ids.outgoingOutlook}/outlook/connect` })),
  'POST /api/v1/outgoing-servers/:id/restore': own(200, async (w) => ({ method: 'POST', url: `/api/v1/outgoing-servers/${await archivedServer(w, 'outgoing', w.jane)}/restore` })),
  'POST /api/v1/outgoing-servers/:id/test': own('allowed', (w) => ({ method: 'POST', url: `/api/v1/outgoing-servers/${w.ids.outgoing}/test` })),
  // Public: signing in needs no credentials (jane's password in the body, whoever sends it).
  'POST /api/v1/session': { request: (w) => ({ method: 'POST', url: '/api/v1/session', payload: { login: 'jane', password: w.jane.password } }), expect: { anonymous: 200, owner: 200, other: 200, admin: 200 } },
  // Public, but the setup link is gone once an admin exists.
  'POST /api/v1/setup': { request: () => ({ method: 'POST', url: '/api/v1/setup', payload: { token: 'x'.repeat(43), login: 'root', email: 'root@example.com', password: 'root-password-123' } }), expect: { anonymous: 403, owner: 403, other: 403, admin: 403 } },
  'POST /api/v1/users': adminOnly(201, () => ({ method: 'POST', url: '/api/v1/users', payload: { login: `matrix${++userCounter}`, email: `matrix${userCounter}@example.com`, password: 'matrix-password-123', role: 'user' } })),
  // Webhooks: admins only; the fixture is a webhook on the allow-listed loopback with one delivery.
  'GET /api/v1/webhooks': adminOnly(200, () => ({ method: 'GET', url: '/api/v1/webhooks' })),
  'POST /api/v1/webhooks': adminOnly(201, async (w) => {
    await w.t.app.services.parameters.set('mail.server.allowed_private_hosts', '127.0.0.1', cliActor);
    return { method: 'POST', url: '/api/v1/webhooks', payload: { url: 'http://127.0.0.1:9/matrix', events: ['mail.sent'] } };
  }),
  'GET /api/v1/webhooks/:id': adminOnly(200, async (w) => ({ method: 'GET', url: `/api/v1/webhooks/${(await matrixWebhook(w)).webhookId}` })),
  'DELETE /api/v1/webhooks/:id': adminOnly(200, async (w) => ({ method: 'DELETE', url: `/api/v1/webhooks/${(await matrixWebhook(w, true)).webhookId}` })),
  'GET /api/v1/webhooks/:id/deliveries': adminOnly(200, async (w) => ({ method: 'GET', url: `/api/v1/webhooks/${(await matrixWebhook(w)).webhookId}/deliveries` })),
  'POST /api/v1/webhooks/:id/deliveries/:deliveryId/replay': adminOnly(200, async (w) => {
    const { webhookId, deliveryId } = await matrixWebhook(w);
    return { method: 'POST', url: `/api/v1/webhooks/${webhookId}/deliveries/${deliveryId}/replay` };
  }),
  'PUT /api/v1/parameters/:key': adminOnly(200, () => ({ method: 'PUT', url: '/api/v1/parameters/mail.catchall.domain', payload: { value: 'example.com' } })),
  'PUT /api/v1/settings': adminOnly(200, () => ({ method: 'PUT', url: '/api/v1/settings', payload: { customEmailServers: true } })),
};

function matches(expected: Expected, status: number): boolean {
  if (expected === 'allowed') return ![401, 403, 404].includes(status) && status < 500;
  return typeof expected === 'number' ? status === expected : expected.includes(status);
}

for (const dialect of dialects) {
  describe(`access matrix over every /api route (${dialect})`, () => {
    let w: World;
    const personOf = (role: Role): Person | null => (role === 'anonymous' ? null : role === 'owner' ? w.jane : role === 'other' ? w.john : w.admin);

    before(async () => {
      w = await startWorld(dialect);
    });
    after(async () => w.close());

    it('has a rule for every /api route in the route table, and no rule for a route that does not exist', () => {
      const routes = w.http.declaredRoutes.filter((r) => r.method !== 'HEAD' && r.url.startsWith('/api/')).map((r) => `${r.method} ${r.url}`).sort();
      assert.deepEqual(routes, Object.keys(rules).sort());
    });

    for (const [route, rule] of Object.entries(rules)) {
      it(`${route}: ${ROLES.map((r) => `${r} ${JSON.stringify(rule.expect[r])}`).join(', ')}`, async () => {
        for (const role of ROLES) {
          const options = await rule.request(w, role);
          const expected = rule.expect[role];
          const refused = typeof expected !== 'string' && [expected].flat().every((s) => s === 401 || s === 403 || s === 404);
          const before = refused ? await dumpDatabase(w.t.app.database.db) : null;
          const res = await w.as(personOf(role), options);
          assert.ok(matches(expected, res.statusCode), `${route} as ${role}: expected ${JSON.stringify(expected)}, got ${res.statusCode} ${res.body.slice(0, 300)}`);
          if (before) assert.deepEqual(await dumpDatabase(w.t.app.database.db), before, `${route} as ${role} was refused but wrote to the database`);
          if (rule.shows && res.statusCode === 200) {
            assert.equal(rule.shows(w, res.body), role !== 'other', `${route} as ${role}: ${role === 'other' ? 'shows' : 'hides'} jane's fixture`);
          }
        }
      });
    }

    // A user attaching a mailbox to a server they may not manage.
    const refusedAndUnchanged = async (person: Person, options: InjectOptions & { url: string }, statuses: readonly number[]) => {
      const before = await dumpDatabase(w.t.app.database.db);
      const res = await w.as(person, options);
      assert.ok(statuses.includes(res.statusCode), `${String(options.method)} ${options.url}: ${res.statusCode} ${res.body}`);
      assert.deepEqual(await dumpDatabase(w.t.app.database.db), before, 'nothing was written');
      return res;
    };

    it("john cannot point jane's servers at his own mailbox or take them over", async () => {
      for (const kind of ['incoming', 'outgoing'] as const) {
        const id = kind === 'incoming' ? w.ids.incoming : w.ids.outgoing;
        await refusedAndUnchanged(w.john, { method: 'PATCH', url: `/api/v1/${kind}-servers/${id}`, payload: { ownerUserId: w.john.id } }, NOT_YOURS);
        await refusedAndUnchanged(w.john, { method: 'PATCH', url: `/api/v1/${kind}-servers/${id}`, payload: { username: 'john@example.com', password: 'johns-password-123' } }, NOT_YOURS);
        const outlookId = kind === 'incoming' ? w.ids.incomingOutlook : w.ids.outgoingOutlook;
        await refusedAndUnchanged(w.john, { method: 'POST', url: `/api/v1/${kind}-servers/${outlookId}/outlook/connect` }, [404]);
      }
    });

    it('jane cannot hand her server to john, nor create one for him', async () => {
      await refusedAndUnchanged(w.jane, { method: 'PATCH', url: `/api/v1/outgoing-servers/${w.ids.outgoing}`, payload: { ownerUserId: w.john.id } }, [403]);
      await refusedAndUnchanged(w.jane, { method: 'PATCH', url: `/api/v1/incoming-servers/${w.ids.incoming}`, payload: { ownerUserId: null } }, [403]);
      await refusedAndUnchanged(
        w.jane,
        { method: 'POST', url: '/api/v1/incoming-servers', payload: { name: 'for john', host: outsideHost, port: 993, security: 'ssl', auth: 'password', username: 'john@example.com', password: 'pw-0123456789', ownerUserId: w.john.id } },
        [403],
      );
    });

    it("the Outlook connect john started for a server of jane's never existed: no state row, and jane's tokens unchanged", async () => {
      const states = async () => (await w.t.app.database.db.selectFrom('oauth_states').selectAll().execute()).length;
      const before = await states();
      await w.as(w.john, { method: 'POST', url: `/api/v1/outgoing-servers/${w.ids.outgoingOutlook}/outlook/connect` });
      assert.equal(await states(), before);
    });
  });
}
