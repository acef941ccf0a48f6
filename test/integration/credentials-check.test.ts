// The Outlook credentials check after a Settings save, against the test identity server answering client_credentials
// as Entra ID does (registered apps): the API's credentialsCheck and the Settings page's flash for a right secret, a
// wrong one, an expired one, an unknown Client ID, an unknown tenant, a multi-tenant authority (skipped), an
// unreachable and a silent authority. The save always stands, and the secret appears in no answer, page or log.
// Both databases (the CLI's part is in settings-cli.test.ts).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import type { CredentialsCheck } from '../../src/oauth/credentials-check.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { freePort } from '../peers/free-port.js';
import { startIdentityServer, TENANT_ID, type IdentityServer } from '../peers/identity-server.js';

const CLIENT_ID = '1b4f9c5e-0000-4000-8000-123456789abc';
const SECRET = 'Chk8Q~right-secret-value.0123456789abcdef';
const WRONG_SECRET = 'Chk8Q~wrong-secret-value.0123456789abcdef';
const EXPIRED_CLIENT_ID = '2c5a0d6f-0000-4000-8000-123456789abc';
const EXPIRED_SECRET = 'Old8Q~expired-secret-value.0123456789abcd';
const UNKNOWN_CLIENT_ID = '3d6b1e70-0000-4000-8000-123456789abc';
const CONTOSO = 'contoso.onmicrosoft.com';
const SECRETS = [SECRET, WRONG_SECRET, EXPIRED_SECRET];

type SettingsAnswer = { outlook: { clientId: string | null; hasClientSecret: boolean; authority: string }; credentialsCheck?: CredentialsCheck };

for (const dialect of dialects) {
  describe(`Outlook credentials check on ${dialect}`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let idp: IdentityServer;
    let adminKey: string;
    let admin: FormBrowser;
    const answers: string[] = [];

    before(async () => {
      idp = await startIdentityServer({
        apps: [
          { clientId: CLIENT_ID, secret: SECRET, tenants: [TENANT_ID, CONTOSO] },
          { clientId: EXPIRED_CLIENT_ID, secret: EXPIRED_SECRET, tenants: [CONTOSO], secretExpired: true },
        ],
      });
      t = await startTestApp(dialect);
      http = await t.app.http();
      const a = await t.createUser('admin', 'admin');
      adminKey = a.apiKey;
      admin = new FormBrowser(http);
      await admin.signIn('admin', a.password);
      await endpoint(CONTOSO);
    });
    after(async () => {
      for (const text of [...answers, t.logs()]) for (const secret of SECRETS) assert.ok(!text.includes(secret), 'no secret in any answer, page or log');
      await t.close();
      await idp.stop();
    });

    const endpoint = (tenant: string, base = idp.url) => t.app.services.parameters.set('microsoft_outlook.endpoint', `${base}/${tenant}/oauth2/v2.0/`, cliActor);
    const put = async (body: object): Promise<SettingsAnswer> => {
      const res = await http.inject({ method: 'PUT', url: '/api/v1/settings', headers: { authorization: `Bearer ${adminKey}` }, payload: body });
      answers.push(res.body);
      assert.equal(res.statusCode, 200, res.body);
      return res.json<SettingsAnswer>();
    };
    const clientCredentialRequests = () => idp.tokenRequests.filter((r) => r.grantType === 'client_credentials');
    const stored = async () => (await t.app.services.settings.outlookCredentials())?.clientSecret;

    it('a right secret: one client_credentials request for Graph\'s .default at the configured tenant, result ok', async () => {
      const before = clientCredentialRequests().length;
      const saved = await put({ customEmailServers: true, outlook: { enabled: true, clientId: CLIENT_ID, clientSecret: SECRET } });
      assert.equal(saved.credentialsCheck?.result, 'ok', saved.credentialsCheck?.message);
      assert.equal(saved.credentialsCheck.code, undefined);
      assert.match(saved.credentialsCheck.message, /^Microsoft accepted the Outlook credentials: .*tenant contoso\.onmicrosoft\.com \(127\.0\.0\.1:\d+\)/);
      const sent = clientCredentialRequests().slice(before);
      assert.equal(sent.length, 1, 'exactly one token request');
      assert.deepEqual([sent[0]?.status, sent[0]?.scope, sent[0]?.tenant, sent[0]?.clientId, sent[0]?.aud], [200, 'https://graph.microsoft.com/.default', CONTOSO, CLIENT_ID, 'https://graph.microsoft.com']);
    });

    it('a wrong secret is saved all the same; the check fails with AADSTS7000215 and says to paste the Value, not the Secret ID', async () => {
      const saved = await put({ outlook: { clientSecret: WRONG_SECRET } });
      assert.deepEqual([saved.credentialsCheck?.result, saved.credentialsCheck?.code], ['failed', 'AADSTS7000215']);
      assert.match(saved.credentialsCheck?.message ?? '', /^Microsoft refused the client secret\. In Settings, paste the client secret's Value, not its Secret ID.*\(Microsoft: invalid_client, AADSTS7000215\)$/);
      assert.equal(saved.outlook.hasClientSecret, true);
      assert.equal(await stored(), WRONG_SECRET, 'the check is advice: the save went through');
      assert.equal(clientCredentialRequests().at(-1)?.status, 401);
    });

    it('an expired secret fails with AADSTS7000222, an unknown Client ID with AADSTS700016', async () => {
      const expired = await put({ outlook: { clientId: EXPIRED_CLIENT_ID, clientSecret: EXPIRED_SECRET } });
      assert.deepEqual([expired.credentialsCheck?.result, expired.credentialsCheck?.code], ['failed', 'AADSTS7000222']);
      assert.match(expired.credentialsCheck?.message ?? '', /^The client secret has expired\. Create a new client secret in the Azure portal/);
      const unknown = await put({ outlook: { clientId: UNKNOWN_CLIENT_ID, clientSecret: SECRET } });
      assert.deepEqual([unknown.credentialsCheck?.result, unknown.credentialsCheck?.code], ['failed', 'AADSTS700016']);
      assert.match(unknown.credentialsCheck?.message ?? '', /no application with this Client ID in the directory.*Check the Client ID in Settings.*\(Microsoft: unauthorized_client, AADSTS700016\)$/);
      assert.equal(unknown.outlook.clientId, UNKNOWN_CLIENT_ID);
    });

    it('an unknown tenant fails with AADSTS90002; changing only the Client ID back is checked too', async () => {
      await endpoint('fabrikam.onmicrosoft.com');
      const saved = await put({ outlook: { clientId: CLIENT_ID } });
      assert.deepEqual([saved.credentialsCheck?.result, saved.credentialsCheck?.code], ['failed', 'AADSTS90002']);
      assert.match(saved.credentialsCheck?.message ?? '', /does not know the tenant.*Check the tenant in Settings/);
      await endpoint(CONTOSO);
    });

    it('a save that changes none of Client ID, secret, cloud or tenant makes no request and answers no credentialsCheck', async () => {
      const before = idp.tokenRequests.length;
      const saved = await put({ customEmailServers: true, outlook: { clientId: CLIENT_ID, clientSecretExpiresAt: '2099-12-31' } });
      assert.equal('credentialsCheck' in saved, false);
      assert.equal(idp.tokenRequests.length, before);
    });

    it('the answer of a PUT can be sent back (GET, modify, PUT): credentialsCheck is dropped, not refused', async () => {
      const first = await put({ outlook: { clientSecret: SECRET } });
      assert.equal(first.credentialsCheck?.result, 'ok');
      const again = await put({ ...first, outlook: { ...first.outlook, clientSecretExpiresAt: '2099-06-30' } });
      assert.equal('credentialsCheck' in again, false, 'nothing the check covers changed');
    });

    it('common, organizations and consumers are skipped with the reason, without a request', async () => {
      const before = idp.tokenRequests.length;
      for (const tenant of ['common', 'organizations', 'consumers']) {
        await endpoint(tenant);
        const saved = await put({ outlook: { clientSecret: SECRET } });
        assert.deepEqual([saved.credentialsCheck?.result, saved.credentialsCheck?.code], ['skipped', 'multi_tenant_authority'], tenant);
        assert.match(saved.credentialsCheck?.message ?? '', new RegExp(`^Not checked with Microsoft: the tenant is ${tenant}`));
      }
      assert.equal(idp.tokenRequests.length, before, 'Microsoft is not asked');
      await endpoint(CONTOSO);
    });

    it('removing the secret is skipped as incomplete', async () => {
      const saved = await put({ outlook: { clientSecret: '' } });
      assert.deepEqual([saved.credentialsCheck?.result, saved.credentialsCheck?.code], ['skipped', 'incomplete']);
      assert.match(saved.credentialsCheck?.message ?? '', /the client secret is not set/);
    });

    it('an authority nobody listens on fails as unreachable, naming the host', async () => {
      const port = await freePort();
      await endpoint(CONTOSO, `http://127.0.0.1:${port}`);
      const saved = await put({ outlook: { clientSecret: SECRET } });
      assert.deepEqual([saved.credentialsCheck?.result, saved.credentialsCheck?.code], ['failed', 'unreachable']);
      assert.match(saved.credentialsCheck?.message ?? '', new RegExp(`^Could not reach Microsoft's sign-in service at 127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)\\. The settings were saved`));
      assert.equal(await stored(), SECRET);
      await endpoint(CONTOSO);
    });

    if (dialect === dialects[0]) {
      it('a silent authority fails as timeout after 5 s, and the save stands', async () => {
        idp.setTokenOutage('hang');
        const started = Date.now();
        try {
          const saved = await put({ outlook: { clientSecret: WRONG_SECRET } });
          const took = Date.now() - started;
          assert.deepEqual([saved.credentialsCheck?.result, saved.credentialsCheck?.code], ['failed', 'timeout']);
          assert.match(saved.credentialsCheck?.message ?? '', /at 127\.0\.0\.1:\d+ \(no answer within 5 s\)/);
          assert.ok(took >= 4_900 && took < 9_000, `answered after ${took} ms`);
          assert.equal(await stored(), WRONG_SECRET);
        } finally {
          idp.setTokenOutage(null);
        }
      });
    }

    it('the Settings page flashes the result: a warning for a refused secret, a success for an accepted one', async () => {
      const form = async (clientSecret: string) => {
        await admin.get('/settings');
        const page = await admin.post('/settings', { customEmailServers: 'on', clientId: CLIENT_ID, clientSecret, clientSecretExpiresAt: '', cloud: 'global', tenant: 'common' });
        answers.push(page.body);
        assert.equal(page.statusCode, 200, page.body);
        return page.body;
      };
      const refused = await form(WRONG_SECRET);
      assert.match(refused, /<p class="flash flash-warning" role="status">Settings saved, but the Outlook credentials check failed: Microsoft refused the client secret\. In Settings, paste the client secret&#39;s Value, not its Secret ID/);
      assert.equal(await stored(), WRONG_SECRET, 'saved all the same');
      const accepted = await form(SECRET);
      assert.match(accepted, /<p class="flash flash-success" role="status">Settings saved\. Microsoft accepted the Outlook credentials/);
      const unchanged = await form('');
      assert.match(unchanged, /<p class="flash flash-success" role="status">Settings saved\.<\/p>/, 'nothing to check: the plain flash');

      await endpoint('common');
      const skipped = await form(SECRET);
      assert.match(skipped, /flash-success[^>]*>Settings saved\. Not checked with Microsoft: the tenant is common/);
      await endpoint(CONTOSO);
    });
  });
}
