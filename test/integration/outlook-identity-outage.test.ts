// The identity provider down while Outlook mail is queued, on both databases: the loopback identity server
// hangs past the token request's timeout, then answers 500, then 503 (Microsoft's temporarily_unavailable).
// Each time the mails stay queued with a transient reason naming Microsoft's sign-in service and come back
// with backoff; the server is never marked needs_reconnect; once the identity server answers again every
// mail goes out through a real SMTP server that validates each XOAUTH2 token at that identity server.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import { TokenStore, defaultTokenStoreOptions } from '../../src/oauth/token-store.js';
import { seedConnection } from '../helpers/oauth-connections.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { testDispatcher, type TestDispatcher } from '../helpers/outgoing.js';
import { microsoftError, startIdentityServer, type IdentityServer } from '../peers/identity-server.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

const MAILBOX = 'alice@example.test';
const MINUTE = 60_000;

for (const dialect of dialects) {
  describe(`Outlook mail while the identity provider is down (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let idp: IdentityServer;
    let sink: SmtpSink;
    let d: TestDispatcher;
    let serverId: number;
    let apiKey: string;

    const api = async (method: 'GET' | 'POST' | 'PUT', url: string, payload?: object) => {
      const res = await http.inject({ method, url, payload, headers: { authorization: `Bearer ${apiKey}` } });
      return { status: res.statusCode, body: res.json<Record<string, unknown>>(), text: res.body };
    };
    const mail = async (id: number) => (await api('GET', `/api/v1/mails/${id}`)).body;
    const tokenStatus = async () => ((await api('GET', `/api/v1/outgoing-servers/${serverId}`)).body.token as { status: string }).status;

    before(async () => {
      idp = await startIdentityServer();
      sink = await startSmtpSink({ auth: 'xoauth2', identityUrl: idp.url, tls: 'starttls' });
      t = await startTestApp(dialect);
      http = await t.app.http();
      apiKey = (await t.createUser('admin', 'admin')).apiKey;
      await t.app.services.parameters.set('microsoft_outlook.endpoint', `${idp.url}/common/oauth2/v2.0/`, cliActor);
      const settings = await api('PUT', '/api/v1/settings', { customEmailServers: true, outlook: { enabled: true, clientId: '3f2504e0-4f89-41d3-9a0c-0305e82c3303', clientSecret: 'client-secret-value~outage-test' } });
      assert.equal(settings.status, 200, settings.text);
      const created = await api('POST', '/api/v1/outgoing-servers', { name: 'Outlook', auth: 'outlook', username: MAILBOX, host: '127.0.0.1', port: sink.port, allowSelfSigned: true });
      assert.equal(created.status, 201, created.text);
      serverId = created.body.id as number;
      // As after "Connect your Outlook account": a refresh token the identity server knows, no access token yet.
      await seedConnection(t.app.database.db, t.app.vault, 'outgoing', serverId, idp.issueRefreshToken(MAILBOX), { account: MAILBOX });
      // The app's own store waits 15 s for Microsoft; this one gives up after 1 s so the hang stays short.
      const tokens = new TokenStore(
        { db: t.app.database.db, vault: t.app.vault, settings: t.app.services.settings, appStatus: t.app.services.oauthAppStatus, log: t.app.logger },
        { ...defaultTokenStoreOptions, refreshTimeoutMs: 1000 },
      );
      d = testDispatcher(t.app, 'outage-worker', { tokens });
    });
    after(async () => {
      idp.setTokenOutage(null);
      await d.close();
      await sink.stop();
      await t.close();
      await idp.stop();
    });

    it('hang, 500 and 503 from the identity server are transient: mails wait with backoff, the server keeps its token, and all go out after', async () => {
      const ids: number[] = [];
      for (let i = 0; i < 3; i++) ids.push((await t.app.services.outbox.enqueue({ from: MAILBOX, to: [`r${i}@client.test`], subject: `outage ${i}`, text: 'x' }, null, cliActor)).id);

      const outages: { name: string; outage: Parameters<IdentityServer['setTokenOutage']>[0]; reason: RegExp; advance: number }[] = [
        { name: 'hang', outage: 'hang', reason: /Microsoft's sign-in service \(127\.0\.0\.1:\d+ did not answer within 1 s\)/, advance: 0 },
        { name: '500', outage: { status: 500, body: '<html><body>Internal Server Error</body></html>' }, reason: /Microsoft's sign-in service \(HTTP 500\)/, advance: MINUTE },
        {
          name: '503',
          outage: { status: 503, body: microsoftError('temporarily_unavailable', 90033, 'A transient error has occurred. Please try again.') },
          reason: /temporarily_unavailable|AADSTS90033/,
          advance: 3 * MINUTE,
        },
      ];
      let attempt = 0;
      for (const o of outages) {
        idp.setTokenOutage(o.outage);
        d.advance(o.advance); // past the previous attempt's backoff (30 s, then 2 min, each ±20 %)
        assert.equal(await d.drain(), 3, `${o.name}: the three mails were tried`);
        attempt++;
        for (const id of ids) {
          const m = await mail(id);
          assert.equal(m.state, 'queued', `${o.name}: ${JSON.stringify(m)}`);
          assert.equal(m.failureType, 'oauth_transient', o.name);
          assert.match(String(m.failureReason), o.reason, o.name);
          assert.match(String(m.failureReason), /retried later/, o.name);
          assert.equal(m.waitingReason, null, `${o.name}: retried with backoff, not waiting for a person`);
          assert.equal(m.attempts, attempt);
          assert.ok(Date.parse(String(m.nextAttemptAt)) > Date.now(), `${o.name}: the next attempt is later`);
        }
        assert.equal(await tokenStatus(), 'valid', `${o.name}: the server is not marked needs_reconnect`);
        assert.equal(sink.messages.length, 0);
        // The peer drops a request whose client gave up only once it sees the connection closed (a moment
        // after the timeout); lifting the hang before that would redeem the refresh token for nobody.
        for (let i = 0; i < 200 && idp.heldTokenRequests > 0; i++) await new Promise((r) => setTimeout(r, 10));
        assert.equal(idp.heldTokenRequests, 0);
      }
      const asked = idp.tokenRequests.filter((r) => r.grantType === 'refresh_token');
      assert.ok(asked.some((r) => r.status === 500) && asked.some((r) => r.status === 503), 'the outages reached the identity server');

      idp.setTokenOutage(null);
      d.advance(10 * MINUTE); // past the third backoff (8 min ±20 %)
      assert.equal(await d.drain(), 3);
      for (const id of ids) {
        const m = await mail(id);
        assert.equal(m.state, 'sent', JSON.stringify(m));
        assert.equal(m.attempts, 4);
      }
      assert.equal(sink.messages.length, 3);
      assert.ok(sink.messages.every((m) => m.user === MAILBOX));
      assert.ok(sink.authAttempts.some((a) => a.method === 'XOAUTH2' && a.ok), 'the token was checked at the identity server');
      assert.equal(await tokenStatus(), 'valid');
    });
  });
}
