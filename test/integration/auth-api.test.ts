import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { declaredRoute } from '../../src/http/server.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';

// Who may call each route. Admin-only routes are the settings, parameters, users and route explanation;
// "user" routes check ownership of the server, mail or message inside (tests below and per resource).
const expectedAccess: Record<string, 'public' | 'user' | 'admin'> = {
  'DELETE /api/v1/incoming-servers/:id': 'user',
  'DELETE /api/v1/outgoing-servers/:id': 'user',
  'DELETE /api/v1/parameters/:key': 'admin',
  'DELETE /api/v1/session': 'user',
  'GET /': 'user',
  'GET /account': 'user',
  'GET /api/v1/api-keys': 'user',
  'GET /api/v1/incoming-servers': 'user',
  'GET /api/v1/incoming-servers/:id': 'user',
  'GET /api/v1/mails': 'user',
  'GET /api/v1/mails/:id': 'user',
  'GET /api/v1/messages': 'user',
  'GET /api/v1/messages/:id': 'user',
  'GET /api/v1/messages/:id/attachments/:attachmentId': 'user',
  'GET /api/v1/messages/:id/raw': 'user',
  'GET /api/v1/outgoing-servers': 'user',
  'GET /api/v1/outgoing-servers/:id': 'user',
  'GET /api/v1/docs': 'public',
  'GET /api/v1/docs/docs.js': 'public',
  'GET /api/v1/jobs/:id': 'user',
  'GET /api/v1/openapi.json': 'public',
  'GET /jobs/progress.js': 'public',
  'GET /api/v1/parameters': 'admin',
  'GET /api/v1/parameters/:key': 'admin',
  'GET /api/v1/route': 'admin',
  'GET /api/v1/session': 'user',
  'GET /api/v1/settings': 'admin',
  'GET /api/v1/threads': 'user',
  'GET /api/v1/users': 'admin',
  'GET /assets/app.css': 'public',
  'GET /assets/app.js': 'public',
  'GET /healthz': 'public',
  'GET /metrics': 'admin',
  'GET /readyz': 'public',
  'GET /inbox': 'user',
  'GET /inbox/:id': 'user',
  'GET /inbox/:id/html': 'user',
  'GET /favicon.ico': 'public',
  'GET /incoming-servers': 'user',
  'GET /incoming-servers/:id': 'user',
  'GET /incoming-servers/new': 'user',
  'GET /login': 'public',
  'GET /compose': 'user',
  'GET /microsoft_outlook/confirm': 'user',
  'GET /outbox': 'user',
  'GET /outbox/:id': 'user',
  'GET /outgoing-servers': 'user',
  'GET /outgoing-servers/:id': 'user',
  'GET /outgoing-servers/new': 'user',
  'GET /parameters': 'admin',
  'GET /route': 'admin',
  'GET /settings': 'admin',
  'GET /setup': 'public',
  'GET /users': 'admin',
  'GET /apps': 'admin',
  'PATCH /api/v1/incoming-servers/:id': 'user',
  'PATCH /api/v1/outgoing-servers/:id': 'user',
  'POST /account/api-keys': 'user',
  'POST /account/api-keys/revoke': 'user',
  'POST /account/password': 'user',
  'POST /api/v1/api-keys': 'user',
  'POST /api/v1/incoming-servers': 'user',
  'POST /api/v1/incoming-servers/:id/fetch': 'user',
  'POST /api/v1/incoming-servers/:id/outlook/connect': 'user',
  'POST /api/v1/incoming-servers/:id/restore': 'user',
  'POST /api/v1/incoming-servers/:id/test': 'user',
  'POST /api/v1/mails': 'user',
  'POST /api/v1/mails/batch': 'user',
  'POST /api/v1/mails/:id/cancel': 'user',
  'POST /api/v1/mails/:id/retry': 'user',
  'POST /api/v1/outgoing-servers': 'user',
  'POST /api/v1/outgoing-servers/:id/outlook/connect': 'user',
  'POST /api/v1/outgoing-servers/:id/restore': 'user',
  'POST /api/v1/outgoing-servers/:id/test': 'user',
  'POST /api/v1/session': 'public',
  'POST /api/v1/setup': 'public',
  'POST /api/v1/users': 'admin',
  'POST /incoming-servers/:id': 'user',
  'POST /incoming-servers/:id/archive': 'user',
  'POST /incoming-servers/:id/fetch': 'user',
  'POST /incoming-servers/:id/outlook/connect': 'user',
  'POST /incoming-servers/:id/test': 'user',
  'POST /incoming-servers/:id/unarchive': 'user',
  'POST /incoming-servers/new': 'user',
  'POST /login': 'public',
  'POST /compose': 'user',
  'POST /logout': 'user',
  'POST /outbox/:id/cancel': 'user',
  'POST /outbox/:id/retry': 'user',
  'POST /outgoing-servers/:id': 'user',
  'POST /outgoing-servers/:id/archive': 'user',
  'POST /outgoing-servers/:id/outlook/connect': 'user',
  'POST /outgoing-servers/:id/test': 'user',
  'POST /outgoing-servers/:id/unarchive': 'user',
  'POST /outgoing-servers/new': 'user',
  'POST /parameters': 'admin',
  'POST /parameters/delete': 'admin',
  'POST /settings': 'admin',
  'POST /setup': 'public',
  'POST /users': 'admin',
  'POST /users/access': 'admin',
  'POST /users/password': 'admin',
  'POST /users/confirm': 'admin',
  'POST /apps/:name/install': 'admin',
  'POST /apps/:name/uninstall': 'admin',
  'PUT /api/v1/parameters/:key': 'admin',
  'GET /api/v1/webhooks': 'admin',
  'POST /api/v1/webhooks': 'admin',
  'GET /api/v1/webhooks/:id': 'admin',
  'DELETE /api/v1/webhooks/:id': 'admin',
  'GET /api/v1/webhooks/:id/deliveries': 'admin',
  'POST /api/v1/webhooks/:id/deliveries/:deliveryId/replay': 'admin',
  'PUT /api/v1/settings': 'admin',
};

function cookieFrom(res: { headers: Record<string, unknown> }): string {
  const raw = res.headers['set-cookie'];
  const first = Array.isArray(raw) ? String(raw[0]) : String(raw);
  return first.split(';')[0]!;
}

for (const dialect of dialects) {
  describe(`sign-in, API keys, CSRF and access rules (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let admin: { id: number; apiKey: string; password: string };
    let user: { id: number; apiKey: string; password: string };

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      admin = await t.createUser('admin', 'admin');
      user = await t.createUser('jane', 'user');
    });
    after(async () => t.close());

    it('signs in with a password and sets an HttpOnly, SameSite=Lax session cookie', async () => {
      const res = await http.inject({ method: 'POST', url: '/api/v1/session', payload: { login: 'ADMIN', password: admin.password } });
      assert.equal(res.statusCode, 200);
      const body = res.json<{ user: { login: string; role: string }; csrfToken: string }>();
      assert.equal(body.user.login, 'admin');
      assert.equal(body.user.role, 'admin');
      assert.ok(body.csrfToken.length >= 20);
      const setCookie = String(res.headers['set-cookie']);
      assert.match(setCookie, /juniper_session=/);
      assert.match(setCookie, /HttpOnly/);
      assert.match(setCookie, /SameSite=Lax/);
      assert.ok(!res.body.includes(admin.password));
    });

    it('answers the same 401 for a wrong password and an unknown login', async () => {
      const wrong = await http.inject({ method: 'POST', url: '/api/v1/session', payload: { login: 'admin', password: 'nope-nope-nope' } });
      const unknown = await http.inject({ method: 'POST', url: '/api/v1/session', payload: { login: 'ghost', password: 'nope-nope-nope' } });
      assert.equal(wrong.statusCode, 401);
      assert.deepEqual(wrong.json(), unknown.json());
      assert.equal(wrong.json<{ error: { code: string } }>().error.code, 'JUNIPER_ERR_BAD_CREDENTIALS');
    });

    it('refuses a cookie-authenticated state change without the CSRF token, and accepts it with the token', async () => {
      const signIn = await http.inject({ method: 'POST', url: '/api/v1/session', payload: { login: 'admin', password: admin.password } });
      const cookie = cookieFrom(signIn);
      const { csrfToken } = signIn.json<{ csrfToken: string }>();
      const payload = { login: 'bob', email: 'bob@example.com', password: 'bob-password-123', role: 'user' };
      const without = await http.inject({ method: 'POST', url: '/api/v1/users', headers: { cookie }, payload });
      assert.equal(without.statusCode, 403);
      assert.equal(without.json<{ error: { code: string } }>().error.code, 'JUNIPER_ERR_CSRF');
      const wrong = await http.inject({ method: 'POST', url: '/api/v1/users', headers: { cookie, 'x-csrf-token': 'x'.repeat(32) }, payload });
      assert.equal(wrong.statusCode, 403);
      // A new user from a session also needs the admin's own password (users-page sudo mode).
      const ok = await http.inject({ method: 'POST', url: '/api/v1/users', headers: { cookie, 'x-csrf-token': csrfToken }, payload: { ...payload, currentPassword: admin.password } });
      assert.equal(ok.statusCode, 201, ok.body);
      assert.equal(ok.json<{ login: string }>().login, 'bob');
      // Reads need no CSRF token.
      const list = await http.inject({ method: 'GET', url: '/api/v1/users', headers: { cookie } });
      assert.equal(list.statusCode, 200);
    });

    it('signs out: the cookie stops working', async () => {
      const signIn = await http.inject({ method: 'POST', url: '/api/v1/session', payload: { login: 'jane', password: user.password } });
      const cookie = cookieFrom(signIn);
      const { csrfToken } = signIn.json<{ csrfToken: string }>();
      const out = await http.inject({ method: 'DELETE', url: '/api/v1/session', headers: { cookie, 'x-csrf-token': csrfToken } });
      assert.equal(out.statusCode, 204);
      const after = await http.inject({ method: 'GET', url: '/api/v1/session', headers: { cookie } });
      assert.equal(after.statusCode, 401);
    });

    it('authenticates API keys without CSRF, and rejects unknown keys even on public routes', async () => {
      const ok = await http.inject({ method: 'GET', url: '/api/v1/users', headers: { authorization: `Bearer ${admin.apiKey}` } });
      assert.equal(ok.statusCode, 200);
      assert.ok(!ok.body.includes('password_hash'), 'user lists never include password hashes');
      const bad = await http.inject({ method: 'GET', url: '/healthz', headers: { authorization: 'Bearer jnp_nothing' } });
      assert.equal(bad.statusCode, 401);
      assert.match(bad.json<{ error: { message: string } }>().error.message, /api-keys create/);
    });

    it('stops a revoked API key', async () => {
      const created = await http.inject({ method: 'POST', url: '/api/v1/api-keys', headers: { authorization: `Bearer ${user.apiKey}` }, payload: { name: 'script' } });
      assert.equal(created.statusCode, 201);
      const { key, id } = created.json<{ key: string; id: number }>();
      assert.equal((await http.inject({ url: '/api/v1/session', headers: { authorization: `Bearer ${key}` } })).statusCode, 200);
      await t.app.services.apiKeys.revoke(id, { userId: null, label: 'test' });
      assert.equal((await http.inject({ url: '/api/v1/session', headers: { authorization: `Bearer ${key}` } })).statusCode, 401);
    });

    it('lets only admins call admin routes', async () => {
      const res = await http.inject({ method: 'GET', url: '/api/v1/users', headers: { authorization: `Bearer ${user.apiKey}` } });
      assert.equal(res.statusCode, 403);
      const anon = await http.inject({ method: 'GET', url: '/api/v1/users' });
      assert.equal(anon.statusCode, 401);
    });

    it('gives every route exactly the access this table says (a new route must be added here on purpose)', () => {
      const actual = Object.fromEntries(http.declaredRoutes.filter((r) => r.method !== 'HEAD').map((r) => [`${r.method} ${r.url}`, r.access]));
      assert.deepEqual(actual, expectedAccess);
      assert.throws(() => declaredRoute({ method: 'GET', url: '/api/v1/undeclared' }), /does not declare who may call it/);
    });

    it('serves /healthz and a sign-in page, and sends signed-out browsers there', async () => {
      assert.equal((await http.inject({ url: '/healthz' })).statusCode, 200);
      const login = await http.inject({ url: '/login' });
      assert.equal(login.statusCode, 200);
      assert.match(login.body, /<form method="post" action="\/login">/);
      const home = await http.inject({ url: '/', headers: { accept: 'text/html' } });
      assert.equal(home.statusCode, 302);
      assert.equal(home.headers.location, '/login?next=%2F');
    });

    it('signs in through the page form and refuses open redirects', async () => {
      const res = await http.inject({
        method: 'POST',
        url: '/login',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams({ login: 'jane', password: user.password, next: '//evil.example/' }).toString(),
      });
      assert.equal(res.statusCode, 303);
      assert.equal(res.headers.location, '/');
      const home = await http.inject({ url: '/', headers: { cookie: cookieFrom(res) } });
      assert.equal(home.statusCode, 200);
      assert.match(home.body, /Welcome, jane/);
      const bad = await http.inject({
        method: 'POST',
        url: '/login',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: 'login=jane&password=wrong-wrong',
      });
      assert.equal(bad.statusCode, 401);
      assert.match(bad.body, /Wrong login or password/);
    });

    it('keeps passwords, API keys and session tokens out of the logs', async () => {
      const logs = t.logs();
      assert.ok(logs.length > 0, 'requests were logged');
      for (const secret of [admin.password, user.password, admin.apiKey, user.apiKey]) assert.ok(!logs.includes(secret), 'a secret reached the log');
      assert.ok(!/juniper_session=[A-Za-z0-9_-]{20}/.test(logs), 'a session cookie reached the log');
    });
  });
}

describe('first-run setup link', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp('sqlite');
  });
  after(async () => t.close());

  it('creates the first admin once with the printed token, then refuses the token', async () => {
    const http = await t.app.http();
    const token = await t.app.services.firstRun.issueIfNeeded();
    assert.ok(token);
    const wrong = await http.inject({ url: '/setup?token=wrong' });
    assert.equal(wrong.statusCode, 403);
    assert.match(wrong.body, /This setup link is not the latest one Juniper printed: use the newest link on the console/);
    assert.equal((await http.inject({ url: `/setup?token=${token}` })).statusCode, 200);
    const payload = { token, login: 'root', email: 'root@example.com', password: 'a-long-password' };
    const res = await http.inject({ method: 'POST', url: '/api/v1/setup', payload });
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(res.json<{ user: { role: string } }>().user.role, 'admin');
    const again = await http.inject({ method: 'POST', url: '/api/v1/setup', payload: { ...payload, login: 'root2' } });
    assert.equal(again.statusCode, 403);
    assert.match(again.json<{ error: { message: string } }>().error.message, /^Setup is done: an admin exists/, 'the API says so too');
    assert.equal(await t.app.services.firstRun.issueIfNeeded(), null, 'no new link once an admin exists');
    // The used link, opened again: it says setup is done and how to go on, with a command that works as written.
    const used = await http.inject({ url: `/setup?token=${token}` });
    assert.equal(used.statusCode, 403);
    assert.match(used.body, /Setup is done: an admin exists, so this link no longer works and no new one is printed\. Sign in; an admin adds users on the Users page, or from the shell: juniper users create --login LOGIN --email EMAIL --admin\./);
    assert.doesNotMatch(used.body, /`/, 'no Markdown backticks on the page');
    assert.ok(!t.logs().includes(token), 'the setup token never reaches the log');
  });
});

describe('review fixes: redirects, cross-site sign-in, forced servers', () => {
  let t: TestApp;
  let http: FastifyInstance;
  before(async () => {
    t = await startTestApp('sqlite');
    http = await t.app.http();
  });
  after(async () => t.close());

  it('refuses every next= that a browser would read as another site', async () => {
    const { safeNext } = await import('../../src/ui/pages.js');
    for (const bad of ['//evil.example', '/\\evil.example', '/\t/evil.example', '/\n/evil.example', 'https://evil.example', '/ok\\path']) {
      assert.equal(safeNext(bad), '/', JSON.stringify(bad));
    }
    assert.equal(safeNext('/outgoing-servers/3?connected=1'), '/outgoing-servers/3?connected=1');
  });

  it('the sign-in form: a repeated next redirects once, to the first, repeated fields are the first, and a huge body is refused (whitespace around a login: sign-in.test.ts)', async () => {
    const user = await t.createUser('dora', 'user');
    const form = (body: string) => http.inject({ method: 'POST', url: '/login', payload: body, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    const twice = await form(`login=dora&password=${encodeURIComponent(user.password)}&next=/inbox&next=//evil.example/phish`);
    assert.equal(twice.statusCode, 303);
    assert.equal(twice.headers.location, '/inbox', 'one Location, the first next (before, both went out as two Location headers)');
    assert.equal((await form('login=dora&login=other&password=x')).statusCode, 401, 'a repeated login is the first one, refused as a wrong password, not a 500');
    const huge = await form(`login=${'a'.repeat(200_000)}&password=x`);
    // The page's error handler answers it on the error page, naming the limit (body-limits.test.ts: the API's).
    assert.equal(huge.statusCode, 413, 'a body far larger than the form is refused before it is read');
    assert.match(huge.body, /larger than POST \/login accepts \(at most 64 KB\)/);
  });

  it('refuses a sign-in posted from another site (login CSRF) and accepts one from Juniper itself', async () => {
    const user = await t.createUser('carol', 'user');
    const payload = { login: 'carol', password: user.password };
    const cross = await http.inject({ method: 'POST', url: '/api/v1/session', payload, headers: { 'sec-fetch-site': 'cross-site' } });
    assert.equal(cross.statusCode, 403);
    const foreign = await http.inject({ method: 'POST', url: '/login', payload: `login=carol&password=${encodeURIComponent(user.password)}`, headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example', host: 'juniper.local' } });
    assert.equal(foreign.statusCode, 403);
    assert.equal(foreign.headers['set-cookie'], undefined, 'no session for a cross-site form');
    const same = await http.inject({ method: 'POST', url: '/api/v1/session', payload, headers: { origin: 'http://juniper.local', host: 'juniper.local', 'sec-fetch-site': 'same-origin' } });
    assert.equal(same.statusCode, 200);
  });

  it("does not let a user force another user's server or send mass mailings", async () => {
    const { cliActor } = await import('../../src/audit/audit-log.js');
    const { cliPrincipal } = await import('../../src/cli/principal.js');
    const john = await t.createUser('john', 'user');
    const jane = await t.createUser('jane', 'user');
    // john's personal server points at loopback: only the allow-list an admin sets permits that.
    await t.app.services.parameters.set('mail.server.allowed_private_hosts', '127.0.0.1', cliActor);
    const johnsServer = await t.app.services.outgoingServers.create(
      { name: 'john', host: '127.0.0.1', port: 2525, security: 'none', auth: 'password', username: 'john', password: 'pw', fromFilter: 'john@example.com', priority: 10, active: true, allowSelfSigned: false, ownerUserId: john.id },
      cliPrincipal,
      cliActor,
    );
    const send = (key: string, extra: object) =>
      http.inject({ method: 'POST', url: '/api/v1/mails', headers: { authorization: `Bearer ${key}` }, payload: { from: 'jane@example.com', to: ['x@client.test'], subject: 's', text: 't', ...extra } });
    const forced = await send(jane.apiKey, { serverId: johnsServer.id });
    assert.equal(forced.statusCode, 404, forced.body);
    const mass = await send(jane.apiKey, { massMailing: true });
    assert.equal(mass.statusCode, 403);
    const own = await send(john.apiKey, { from: 'john@example.com', serverId: johnsServer.id });
    assert.equal(own.statusCode, 202, own.body);
    assert.equal((await t.app.services.queue.list()).length, 1, 'only the allowed mail was queued');
  });
});
