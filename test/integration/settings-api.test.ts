// Settings and system parameters over the REST API as scripts use them: API keys, admin-only access,
// the write-only client secret, validation errors that name the key and the rule, and the refusal to uninstall
// Microsoft Outlook while servers use it. Both databases.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';

const CLIENT_ID = '1b4f9c5e-0000-4000-8000-123456789abc';
const SECRET = 'Qz8~integration-secret-value.0123456789';

for (const dialect of dialects) {
  describe(`settings and parameters API on ${dialect}`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let adminKey: string;
    let userKey: string;

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      adminKey = (await t.createUser('admin', 'admin')).apiKey;
      userKey = (await t.createUser('jane', 'user')).apiKey;
    });
    after(async () => t.close());

    const call = async (method: 'GET' | 'PUT' | 'POST' | 'PATCH' | 'DELETE', url: string, key: string | null, payload?: object) => {
      const options: InjectOptions = { method, url, headers: key ? { authorization: `Bearer ${key}` } : {} };
      if (payload !== undefined) options.payload = payload;
      return http.inject(options);
    };

    it('stores the client secret from PUT and only ever answers hasClientSecret', async () => {
      const put = await call('PUT', '/api/v1/settings', adminKey, {
        customEmailServers: true,
        outlook: { enabled: true, clientId: CLIENT_ID, clientSecret: SECRET, clientSecretExpiresAt: '2099-12-31' },
      });
      assert.equal(put.statusCode, 200, put.body);
      assert.ok(!put.body.includes(SECRET), 'PUT does not echo the secret');

      const get = await call('GET', '/api/v1/settings', adminKey);
      assert.equal(get.statusCode, 200, get.body);
      assert.ok(!get.body.includes(SECRET), 'GET does not reveal the secret');
      const body = get.json<{ customEmailServers: boolean; outlook: Record<string, unknown> }>();
      assert.equal(body.customEmailServers, true);
      assert.equal(body.outlook.hasClientSecret, true);
      assert.equal(body.outlook.clientId, CLIENT_ID);
      assert.equal('clientSecret' in body.outlook, false);
      assert.equal(body.outlook.authority, 'https://login.microsoftonline.com/common/oauth2/v2.0/');
      assert.ok(!t.logs().includes(SECRET), 'the logs never carry the secret');

      const partial = await call('PUT', '/api/v1/settings', adminKey, { outlook: { tenant: 'organizations' } });
      assert.equal(partial.statusCode, 200, partial.body);
      assert.equal(partial.json<{ outlook: { hasClientSecret: boolean; tenant: string } }>().outlook.hasClientSecret, true, 'a partial PUT keeps the secret');
      assert.equal((await t.app.services.settings.outlookCredentials())?.clientSecret, SECRET);

      const cleared = await call('PUT', '/api/v1/settings', adminKey, { outlook: { clientSecret: '' } });
      assert.equal(cleared.json<{ outlook: { hasClientSecret: boolean } }>().outlook.hasClientSecret, false);
    });

    it('refuses unknown and read-only settings fields with 400 naming them', async () => {
      const res = await call('PUT', '/api/v1/settings', adminKey, { outlook: { clientID: CLIENT_ID, redirectUri: 'https://x' }, colour: 'blue' });
      assert.equal(res.statusCode, 400);
      const { error } = res.json<{ error: { code: string; message: string } }>();
      assert.equal(error.code, 'JUNIPER_ERR_VALIDATION');
      for (const name of ['clientID', 'redirectUri', 'colour']) assert.match(error.message, new RegExp(name));
      const badId = await call('PUT', '/api/v1/settings', adminKey, { outlook: { clientId: 'juniper' } });
      assert.equal(badId.statusCode, 400);
      assert.match(badId.json<{ error: { message: string } }>().error.message, /outlook\.clientId: .*GUID/);
      // The Secret ID where the secret's Value belongs (the mix-up the procedure warns of): refused, nothing stored.
      const stored = (await t.app.services.settings.outlookCredentials())?.clientSecret;
      const secretId = await call('PUT', '/api/v1/settings', adminKey, { outlook: { clientSecret: '7d6f3c2a-91b4-4e0f-8c5d-2b1a0e9f8d7c' } });
      assert.equal(secretId.statusCode, 400, secretId.body);
      const refused = secretId.json<{ error: { message: string; field?: string } }>().error;
      assert.match(refused.message, /outlook\.clientSecret: looks like the Secret ID \(a GUID\), not the secret: paste the Value column/);
      assert.equal(refused.field, 'outlook.clientSecret');
      assert.equal((await t.app.services.settings.outlookCredentials())?.clientSecret, stored, 'the stored secret is unchanged');
    });

    it('accepts back the body GET returned: unchanged read-only fields are ignored, a changed one is refused', async () => {
      await t.app.services.parameters.set('web.base.url', 'https://juniper.example', { userId: null, label: 'test' });
      const put = await call('PUT', '/api/v1/settings', adminKey, {
        customEmailServers: true,
        outlook: { enabled: true, clientId: CLIENT_ID, clientSecret: SECRET, clientSecretExpiresAt: '2099-12-31', tenant: 'common' },
      });
      assert.equal(put.statusCode, 200, put.body);
      const before = (await call('GET', '/api/v1/settings', adminKey)).json<{ outlook: Record<string, unknown> }>();
      assert.equal(before.outlook.hasClientSecret, true);
      assert.equal(before.outlook.redirectUri, 'https://juniper.example/microsoft_outlook/confirm');

      const modified = { ...before, outlook: { ...before.outlook, tenant: 'organizations' } };
      const back = await call('PUT', '/api/v1/settings', adminKey, modified);
      assert.equal(back.statusCode, 200, back.body);
      const after = (await call('GET', '/api/v1/settings', adminKey)).json<{ outlook: Record<string, unknown> }>();
      assert.equal(after.outlook.tenant, 'organizations');
      const { tenant: _t1, authority: a1, ...restBefore } = before.outlook;
      const { tenant: _t2, authority: a2, ...restAfter } = after.outlook;
      assert.deepEqual(restAfter, restBefore, 'only the tenant (and the authority that follows it) changed');
      assert.notEqual(a1, a2);
      assert.equal((await t.app.services.settings.outlookCredentials())?.clientSecret, SECRET, 'the secret survived the round trip');

      for (const [field, value, message] of [
        ['redirectUri', 'https://evil.example/microsoft_outlook/confirm', /redirectUri: is read-only: it follows the parameter web\.base\.url/],
        ['hasClientSecret', false, /hasClientSecret: is read-only: set clientSecret/],
        ['authority', 'https://login.example/', /authority: is read-only/],
      ] as const) {
        const changed = await call('PUT', '/api/v1/settings', adminKey, { ...after, outlook: { ...after.outlook, [field]: value, tenant: 'consumers' } });
        assert.equal(changed.statusCode, 400, `${field}: ${changed.body}`);
        assert.match(changed.json<{ error: { message: string } }>().error.message, message);
      }
      const unchanged = (await call('GET', '/api/v1/settings', adminKey)).json<{ outlook: Record<string, unknown> }>();
      assert.equal(unchanged.outlook.tenant, 'organizations', 'a refused PUT wrote nothing');
      // A body read yesterday: the days left and the warning follow the clock, so they are dropped, never refused.
      const stale = await call('PUT', '/api/v1/settings', adminKey, { ...unchanged, outlook: { ...unchanged.outlook, clientSecretDaysLeft: 1, clientSecretWarning: { level: 'critical', message: 'old' } } });
      assert.equal(stale.statusCode, 200, stale.body);
      await t.app.services.parameters.unset('web.base.url', { userId: null, label: 'test' });
    });

    it('keeps settings and parameters admin-only: 403 for a user, 401 without a key', async () => {
      const before = await t.app.services.settings.get();
      const userCalls: [method: 'GET' | 'PUT' | 'DELETE', url: string, payload?: object][] = [
        ['GET', '/api/v1/settings'],
        ['PUT', '/api/v1/settings', { customEmailServers: true }],
        ['GET', '/api/v1/parameters'],
        ['GET', '/api/v1/parameters/web.base.url'],
        ['PUT', '/api/v1/parameters/web.base.url', { value: 'https://evil.example.com' }],
        ['DELETE', '/api/v1/parameters/web.base.url'],
      ];
      for (const [method, url, payload] of userCalls) {
        const asUser = await call(method, url, userKey, payload);
        assert.equal(asUser.statusCode, 403, `${method} ${url} as a user: ${asUser.body}`);
        assert.equal(asUser.json<{ error: { code: string } }>().error.code, 'JUNIPER_ERR_FORBIDDEN');
        const anonymous = await call(method, url, null, payload);
        assert.equal(anonymous.statusCode, 401, `${method} ${url} without a key: ${anonymous.body}`);
      }
      assert.deepEqual(await t.app.services.settings.get(), before, 'nothing changed');
      await assert.rejects(t.app.services.parameters.get('web.base.url'), 'web.base.url stayed unset');
    });

    it('refuses outlook.enabled false with 409 naming the servers that use Outlook and the field, until they are archived', async () => {
      assert.equal((await call('PUT', '/api/v1/settings', adminKey, { outlook: { enabled: true } })).statusCode, 200);
      const sending = await call('POST', '/api/v1/outgoing-servers', adminKey, { name: 'Notifications', auth: 'outlook', username: 'notifications@example.com' });
      assert.equal(sending.statusCode, 201, sending.body);
      const fetching = await call('POST', '/api/v1/incoming-servers', adminKey, { name: 'Support', auth: 'outlook', username: 'support@example.com' });
      assert.equal(fetching.statusCode, 201, fetching.body);
      const refusal = {
        error: {
          code: 'JUNIPER_ERR_OUTLOOK_IN_USE',
          message: 'Microsoft Outlook is still used by the servers "Notifications", "Support": switch them off Outlook or archive them, then uninstall.',
          field: 'outlook.enabled',
        },
      };
      const refused = await call('PUT', '/api/v1/settings', adminKey, { outlook: { enabled: false } });
      assert.equal(refused.statusCode, 409, refused.body);
      assert.deepEqual(refused.json(), refusal);
      // The GET, modify, PUT of a script is refused alike, and nothing of it is written.
      const view = (await call('GET', '/api/v1/settings', adminKey)).json<{ customEmailServers: boolean; outlook: Record<string, unknown> }>();
      const whole = await call('PUT', '/api/v1/settings', adminKey, { ...view, customEmailServers: !view.customEmailServers, outlook: { ...view.outlook, enabled: false } });
      assert.equal(whole.statusCode, 409, whole.body);
      assert.deepEqual(whole.json(), refusal);
      assert.deepEqual((await call('GET', '/api/v1/settings', adminKey)).json(), view, 'nothing changed');

      assert.equal((await call('DELETE', `/api/v1/outgoing-servers/${sending.json<{ id: number }>().id}`, adminKey)).statusCode, 200);
      const one = await call('PUT', '/api/v1/settings', adminKey, { outlook: { enabled: false } });
      assert.equal(one.statusCode, 409);
      assert.equal(one.json<{ error: { message: string } }>().error.message, 'Microsoft Outlook is still used by the server "Support": switch them off Outlook or archive them, then uninstall.');
      assert.equal((await call('DELETE', `/api/v1/incoming-servers/${fetching.json<{ id: number }>().id}`, adminKey)).statusCode, 200);
      const uninstalled = await call('PUT', '/api/v1/settings', adminKey, { outlook: { enabled: false } });
      assert.equal(uninstalled.statusCode, 200, uninstalled.body);
      assert.equal(uninstalled.json<{ outlook: { enabled: boolean } }>().outlook.enabled, false);
    });

    it('refuses with 409, naming the fix and the field, to create an Outlook server or switch one to Outlook while Microsoft Outlook is uninstalled', async () => {
      assert.equal((await call('GET', '/api/v1/settings', adminKey)).json<{ outlook: { enabled: boolean } }>().outlook.enabled, false);
      const refusal = (noun: string, name: string) => ({
        error: {
          code: 'JUNIPER_ERR_SETUP_INCOMPLETE',
          message: `Microsoft Outlook is not installed, so the ${noun} "${name}" cannot sign in with it: install Microsoft Outlook in Apps first (an admin: remove the Apps filter, search Outlook, Install), or choose another sign-in.`,
          field: 'auth',
        },
      });
      const sending = await call('POST', '/api/v1/outgoing-servers', adminKey, { name: 'Notifications', auth: 'outlook', username: 'notifications@example.com' });
      assert.equal(sending.statusCode, 409, sending.body);
      assert.deepEqual(sending.json(), refusal('outgoing mail server', 'Notifications'));
      const fetching = await call('POST', '/api/v1/incoming-servers', adminKey, { name: 'Support', auth: 'outlook', username: 'support@example.com' });
      assert.equal(fetching.statusCode, 409, fetching.body);
      assert.deepEqual(fetching.json(), refusal('incoming mail server', 'Support'));
      const relay = await call('POST', '/api/v1/outgoing-servers', adminKey, { name: 'Relay', host: '127.0.0.1', port: 587, auth: 'password', username: 'relay', password: 'relay-pw' });
      assert.equal(relay.statusCode, 201, relay.body);
      const id = relay.json<{ id: number }>().id;
      const switched = await call('PATCH', `/api/v1/outgoing-servers/${id}`, adminKey, { auth: 'outlook', username: 'relay@example.com' });
      assert.equal(switched.statusCode, 409, switched.body);
      assert.deepEqual(switched.json(), refusal('outgoing mail server', 'Relay'));
      assert.equal((await call('GET', `/api/v1/outgoing-servers/${id}`, adminKey)).json<{ auth: string }>().auth, 'password', 'nothing was saved');
      // Installed again, both go through.
      assert.equal((await call('PUT', '/api/v1/settings', adminKey, { outlook: { enabled: true } })).statusCode, 200);
      assert.equal((await call('PATCH', `/api/v1/outgoing-servers/${id}`, adminKey, { auth: 'outlook', username: 'relay@example.com' })).statusCode, 200);
      assert.equal((await call('DELETE', `/api/v1/outgoing-servers/${id}`, adminKey)).statusCode, 200);
      assert.equal((await call('PUT', '/api/v1/settings', adminKey, { outlook: { enabled: false } })).statusCode, 200);
    });

    it('refuses a bad mail.catchall.domain with 400 naming the key and the rule', async () => {
      const res = await call('PUT', '/api/v1/parameters/mail.catchall.domain', adminKey, { value: 'not a domain' });
      assert.equal(res.statusCode, 400);
      assert.deepEqual(res.json(), {
        error: {
          code: 'JUNIPER_ERR_INVALID_PARAMETER',
          message: 'mail.catchall.domain must be a domain name such as example.com (got "not a domain")',
        },
      });
    });

    it('sets, reads, lists and deletes parameters, and the redirect URI follows web.base.url', async () => {
      const put = await call('PUT', '/api/v1/parameters/mail.catchall.domain', adminKey, { value: 'Example.COM' });
      assert.equal(put.statusCode, 200, put.body);
      assert.equal(put.json<{ key: string; value: string }>().value, 'example.com');
      assert.equal(put.json<{ key: string }>().key, 'mail.catchall.domain');

      const flag = await call('PUT', '/api/v1/parameters/mass_mailing.outgoing_mail_server', adminKey, { value: false });
      assert.equal(flag.json<{ value: string }>().value, 'false', 'JSON booleans are taken as text');

      const get = await call('GET', '/api/v1/parameters/mail.catchall.domain', adminKey);
      assert.equal(get.json<{ value: string }>().value, 'example.com');

      const list = await call('GET', '/api/v1/parameters', adminKey);
      const items = list.json<{ key: string; value: string; isDefault?: boolean }[]>();
      assert.ok(Array.isArray(items));
      assert.ok(items.some((p) => p.key === 'mail.catchall.domain' && p.value === 'example.com'));
      assert.ok(items.some((p) => p.key === 'mail.message.max_bytes' && p.isDefault === true), 'defaults are listed and marked');

      await call('PUT', '/api/v1/parameters/web.base.url', adminKey, { value: 'https://mail.example.com/' });
      const settings = await call('GET', '/api/v1/settings', adminKey);
      assert.equal(settings.json<{ outlook: { redirectUri: string } }>().outlook.redirectUri, 'https://mail.example.com/microsoft_outlook/confirm');

      const del = await call('DELETE', '/api/v1/parameters/mail.catchall.domain', adminKey);
      assert.equal(del.statusCode, 204);
      assert.equal(del.body, '');
      const gone = await call('GET', '/api/v1/parameters/mail.catchall.domain', adminKey);
      assert.equal(gone.statusCode, 404);
      assert.equal(gone.json<{ error: { code: string } }>().error.code, 'JUNIPER_ERR_UNKNOWN_PARAMETER');
      assert.equal((await call('DELETE', '/api/v1/parameters/mail.catchall.domain', adminKey)).statusCode, 204, 'DELETE is idempotent');

      const noValue = await call('PUT', '/api/v1/parameters/x.y', adminKey, { val: 'typo' });
      assert.equal(noValue.statusCode, 400);
      assert.match(noValue.json<{ error: { message: string } }>().error.message, /val/);
    });
  });
}
