// The secrets audit (issue 8): runs every flow that handles a secret (sign-in, the password asked again to
// create an API key, the client secret, servers with passwords, Connect Outlook through the loopback identity
// server, mail over XOAUTH2 and over a password), then scans what Juniper wrote or answered: its logs, every
// API response body of the run, every HTML page (all GET page routes of the route table, as the admin), and the
// database (the SQLite file bytes with its WAL, and every value of every table on both databases). No secret
// may appear in plain text, nor base64-encoded (as PLAIN and XOAUTH2 put them on the wire). Self-contained, so
// it can run in any order. Both databases.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import { accessTokenContext, refreshTokenContext } from '../../src/oauth/connections.js';
import { connectionOf } from '../helpers/oauth-connections.js';
import { dialects } from '../helpers/databases.js';
import { allText } from '../helpers/db-dump.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { connectOutlook, signIn, type BrowserSession } from '../helpers/outlook.js';
import { testDispatcher } from '../helpers/outgoing.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

const CLIENT_ID = '7a1c2e3f-4d5b-4c6a-9e8f-0a1b2c3d4e5f';
const CLIENT_SECRET = 'audit-client-secret~Q7w.Xk29pLm4nB8vZr1T';
const SMTP_USER = 'relay@example.com';
const SMTP_PASSWORD = 'audit-smtp-password-Kq83Lz';
const IMAP_PASSWORD = 'audit-imap-password-Wm27Px';
const MAILBOX = 'audit@example.test';

/** A secret and the forms it may take on the wire or in a careless log. */
function forms(secret: string, saslUser?: string): string[] {
  const out = [secret, Buffer.from(secret).toString('base64'), Buffer.from(secret).toString('base64url')];
  if (saslUser) {
    out.push(Buffer.from(`\u0000${saslUser}\u0000${secret}`).toString('base64'));
    out.push(Buffer.from(`user=${saslUser}\u0001auth=Bearer ${secret}\u0001\u0001`).toString('base64'));
  }
  // A short base64 form could match by chance inside longer text; these are all 20+ characters.
  return out.filter((f) => f.length >= 16);
}

for (const dialect of dialects) {
  describe(`secrets audit (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let idp: IdentityServer;
    let oauthSink: SmtpSink;
    let passwordSink: SmtpSink;
    const responses: string[] = [];
    const secrets = new Map<string, string[]>();
    const remember = (name: string, secret: string, saslUser?: string) => secrets.set(name, forms(secret, saslUser));

    before(async () => {
      idp = await startIdentityServer();
      [oauthSink, passwordSink] = await Promise.all([
        startSmtpSink({ auth: 'xoauth2', identityUrl: idp.url, tls: 'starttls' }),
        startSmtpSink({ auth: 'password', passwords: { [SMTP_USER]: SMTP_PASSWORD }, tls: 'starttls' }),
      ]);
      t = await startTestApp(dialect);
      http = await t.app.http();
    });
    after(async () => {
      await t.close();
      await Promise.all([oauthSink.stop(), passwordSink.stop()]);
      await idp.stop();
    });

    it('runs every flow that handles a secret', async () => {
      const admin = await t.createUser('admin', 'admin');
      const jane = await t.createUser('jane', 'user');
      remember('admin password', admin.password);
      remember('user password', jane.password);
      remember('admin API key', admin.apiKey);
      remember('user API key', jane.apiKey);
      remember('client secret', CLIENT_SECRET);
      remember('SMTP password', SMTP_PASSWORD, SMTP_USER);
      remember('IMAP password', IMAP_PASSWORD, MAILBOX);

      const record = async (options: InjectOptions & { url: string }) => {
        const res = await http.inject(options);
        responses.push(`${String(options.method ?? 'GET')} ${options.url} ${res.statusCode} ${JSON.stringify(res.headers)}\n${res.body}`);
        return res;
      };
      const session: BrowserSession = await signIn(http, 'admin', admin.password);
      const signInPage = await record({ method: 'POST', url: '/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams({ login: 'jane', password: jane.password }).toString() });
      assert.equal(signInPage.statusCode, 303);
      const wrong = await record({ method: 'POST', url: '/api/v1/session', payload: { login: 'jane', password: `${jane.password}-wrong` } });
      assert.equal(wrong.statusCode, 401);
      remember('a mistyped password', `${jane.password}-wrong`);
      const api = (method: InjectOptions['method'], url: string, payload?: object) => record({ method, url, payload, headers: { cookie: session.cookie, 'x-csrf-token': session.csrfToken } });

      // Create API key asks for the password: on the Account page a mistyped one, then the right one; the same
      // over the API with the session.
      const nonceOf = (body: string) => /name="nonce" value="([^"]+)"/.exec(body)?.[1] ?? '';
      const keyForm = (password: string, nonce: string) =>
        record({
          method: 'POST',
          url: '/account/api-keys',
          headers: { cookie: session.cookie, accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded' },
          payload: new URLSearchParams({ _csrf: session.csrfToken, nonce, name: 'audit', password }).toString(),
        });
      const account = await record({ method: 'GET', url: '/account', headers: { cookie: session.cookie, accept: 'text/html' } });
      const refusedKey = await keyForm(`${admin.password}-typo`, nonceOf(account.body));
      assert.equal(refusedKey.statusCode, 400, refusedKey.body);
      remember('a mistyped password for an API key', `${admin.password}-typo`);
      assert.equal((await keyForm(admin.password, nonceOf(refusedKey.body))).statusCode, 200);
      assert.equal((await api('POST', '/api/v1/api-keys', { name: 'audit api', password: `${admin.password}-typo` })).statusCode, 403);
      assert.equal((await api('POST', '/api/v1/api-keys', { name: 'audit api', password: admin.password })).statusCode, 201);

      await t.app.services.parameters.set('web.base.url', 'https://juniper.example.com', cliActor);
      await t.app.services.parameters.set('microsoft_outlook.endpoint', `${idp.url}/common/oauth2/v2.0/`, cliActor);
      assert.equal((await api('PUT', '/api/v1/settings', { customEmailServers: true, outlook: { enabled: true, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET } })).statusCode, 200);
      // A wrong value in the Client ID field (the secret pasted there) is refused without being echoed.
      assert.equal((await api('PUT', '/api/v1/settings', { outlook: { clientId: CLIENT_SECRET } })).statusCode, 400);

      const smtp = await api('POST', '/api/v1/outgoing-servers', { name: 'relay', host: '127.0.0.1', port: passwordSink.port, security: 'starttls', allowSelfSigned: true, auth: 'password', username: SMTP_USER, password: SMTP_PASSWORD, fromFilter: 'example.com' });
      assert.equal(smtp.statusCode, 201, smtp.body);
      const outlook = await api('POST', '/api/v1/outgoing-servers', { name: 'outlook', auth: 'outlook', username: MAILBOX, host: '127.0.0.1', port: oauthSink.port, allowSelfSigned: true });
      assert.equal(outlook.statusCode, 201, outlook.body);
      const outlookId = outlook.json<{ id: number }>().id;
      const imap = await api('POST', '/api/v1/incoming-servers', { name: 'imap', host: '127.0.0.1', port: 1, security: 'ssl', auth: 'password', username: MAILBOX, password: IMAP_PASSWORD });
      assert.equal(imap.statusCode, 201, imap.body);
      await api('POST', `/api/v1/incoming-servers/${imap.json<{ id: number }>().id}/test`);
      // A wrong password for the relay: the refusal must not carry the password either.
      const wrongRelay = await api('POST', '/api/v1/outgoing-servers', { name: 'relay wrong', host: '127.0.0.1', port: passwordSink.port, security: 'starttls', allowSelfSigned: true, auth: 'password', username: SMTP_USER, password: `${SMTP_PASSWORD}-old`, fromFilter: 'old.example.com' });
      remember('a wrong SMTP password', `${SMTP_PASSWORD}-old`, SMTP_USER);
      await api('POST', `/api/v1/outgoing-servers/${wrongRelay.json<{ id: number }>().id}/test`);
      await api('POST', `/api/v1/outgoing-servers/${smtp.json<{ id: number }>().id}/test`);

      const confirmed = await connectOutlook(http, session, 'outgoing', outlookId);
      responses.push(confirmed.body);
      assert.equal(confirmed.statusCode, 303, confirmed.body);
      await api('POST', `/api/v1/outgoing-servers/${outlookId}/test`);

      const d = testDispatcher(t.app);
      await api('POST', '/api/v1/mails', { from: MAILBOX, to: ['customer@client.test'], subject: 'via oauth', text: 'x' });
      await api('POST', '/api/v1/mails', { from: 'billing@example.com', to: ['customer@client.test'], subject: 'via password', text: 'x' });
      await d.drain();
      await d.close();
      assert.equal(oauthSink.messages.length, 1, 'the XOAUTH2 mail arrived');
      assert.equal(passwordSink.messages.length, 1, 'the password mail arrived');
      // Force a refresh, so a rotated refresh token and a second access token exist too.
      await t.app.services.tokens.accessToken('outgoing', outlookId, { renew: true });

      const row = await connectionOf(t.app.database.db, 'outgoing', outlookId);
      remember('refresh token', t.app.vault.decrypt(row.refresh_token_enc!, refreshTokenContext('outgoing', outlookId)));
      remember('access token', t.app.vault.decrypt(row.access_token_enc!, accessTokenContext('outgoing', outlookId)), MAILBOX);
      for (const auth of oauthSink.authAttempts) if (auth.method === 'XOAUTH2') assert.ok(auth.ok);

      // Every API read and every page, as the admin.
      for (const route of http.declaredRoutes.filter((r) => r.method === 'GET')) {
        const url = route.url
          .replace('/outgoing-servers/:id', `/outgoing-servers/${outlookId}`)
          .replace('/incoming-servers/:id', `/incoming-servers/${imap.json<{ id: number }>().id}`)
          .replace(/:id|:attachmentId/g, '1')
          .replace(':key', 'web.base.url');
        await record({ method: 'GET', url: route.url === '/api/v1/route' ? `${url}?from=billing%40example.com` : url, headers: { cookie: session.cookie, accept: 'text/html' } });
        await record({ method: 'GET', url: `${url}${url.includes('?') ? '&' : '?'}debug=1`, headers: { cookie: session.cookie, accept: 'text/html' } });
      }
      assert.ok(responses.length > 60, `${responses.length} responses recorded`);
    });

    const assertNoSecret = (where: string, text: string) => {
      const hits = [...secrets].filter(([, f]) => f.some((form) => text.includes(form))).map(([name]) => name);
      assert.deepEqual(hits, [], `${where} holds: ${hits.join(', ')}`);
    };

    it('finds no secret in the logs', () => {
      assert.ok(secrets.size >= 11 && t.logs().length > 10_000, 'the flows ran and logged');
      // The scanner itself can fail: a plain and a base64 copy of a secret are both found.
      assert.throws(() => assertNoSecret('probe', `x${CLIENT_SECRET}x`), /client secret/);
      assert.throws(() => assertNoSecret('probe', Buffer.from(`\u0000${SMTP_USER}\u0000${SMTP_PASSWORD}`).toString('base64')), /SMTP password/);
      assertNoSecret('the logs', t.logs());
    });

    it('finds no secret in any API response or HTML page', () => {
      for (const r of responses) assertNoSecret(`the response ${r.slice(0, 80)}`, r);
    });

    it('finds no secret in the database: every value of every table, and the SQLite file bytes', async () => {
      const text = await allText(t.app.database.db);
      assert.ok(text.includes('v1:'), 'the dump holds the encrypted values');
      assertNoSecret('the database', text);
      if (t.config.database.kind === 'sqlite') {
        const file = t.config.database.file;
        for (const f of [file, `${file}-wal`].filter((p) => fs.existsSync(p))) assertNoSecret(f, fs.readFileSync(f).toString('latin1'));
      }
    });
  });
}
