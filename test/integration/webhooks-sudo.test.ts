// A webhook registered from an admin's browser session asks the admin's password (currentPassword), as a new
// user or API key does, unless it was confirmed on the Users page in the last 10 minutes: a webhook is a lasting
// feed of every mailbox's senders, recipients and subjects to a URL of the caller's choice, so whoever holds the
// session for a moment must not set one up (hostile review 16). An API key registers one without. Both databases.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';

const HOOK = { url: 'http://127.0.0.1:9/hook', events: ['message.received'] };

for (const dialect of dialects) {
  describe(`registering a webhook from a browser session (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let admin: { apiKey: string; password: string };
    let session: { cookie: string; csrfToken: string };

    const hooks = async () => (await t.app.services.webhooks.list()).length;
    const fromSession = (payload: object, url = '/api/v1/webhooks') =>
      http.inject({ method: 'POST', url, payload, headers: { cookie: session.cookie, 'x-csrf-token': session.csrfToken, host: 'localhost' } });

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      admin = await t.createUser('admin', 'admin');
      await t.app.services.parameters.set('mail.server.allowed_private_hosts', '127.0.0.1', cliActor);
      const signIn = await http.inject({ method: 'POST', url: '/api/v1/session', payload: { login: 'admin', password: admin.password }, headers: { host: 'localhost' } });
      assert.equal(signIn.statusCode, 200, signIn.body);
      const cookie = String(signIn.headers['set-cookie']).split(';')[0]!;
      session = { cookie, csrfToken: signIn.json<{ csrfToken: string }>().csrfToken };
    });
    after(async () => t.close());

    it('refuses a session without the password, or with a wrong one, and registers nothing', async () => {
      const missing = await fromSession(HOOK);
      assert.equal(missing.statusCode, 400, missing.body);
      assert.equal(missing.json<{ error: { field: string } }>().error.field, 'currentPassword');
      assert.match(missing.body, /No webhook was registered/);
      const wrong = await fromSession({ ...HOOK, currentPassword: 'not-the-password' });
      assert.equal(wrong.statusCode, 403, wrong.body);
      assert.equal(await hooks(), 0);
      assert.doesNotMatch(t.logs(), /not-the-password/, 'the password is not logged');
    });

    it('registers with the password, after a confirmation on the Users page, and with an API key', async () => {
      const withPassword = await fromSession({ ...HOOK, currentPassword: admin.password });
      assert.equal(withPassword.statusCode, 201, withPassword.body);
      const confirm = await http.inject({ method: 'POST', url: '/users/confirm', payload: `_csrf=${encodeURIComponent(session.csrfToken)}&password=${encodeURIComponent(admin.password)}`, headers: { cookie: session.cookie, host: 'localhost', 'content-type': 'application/x-www-form-urlencoded' } });
      assert.equal(confirm.statusCode, 303, confirm.body);
      assert.equal((await fromSession(HOOK)).statusCode, 201, 'confirmed lately: not asked again');
      const byKey = await http.inject({ method: 'POST', url: '/api/v1/webhooks', payload: HOOK, headers: { authorization: `Bearer ${admin.apiKey}` } });
      assert.equal(byKey.statusCode, 201, byKey.body);
      assert.equal(await hooks(), 3);
    });
  });
}
