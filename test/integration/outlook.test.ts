// Microsoft Outlook OAuth end to end, on both databases: Connect your Outlook account against a real
// loopback authorization server (Microsoft-shaped, rotating refresh tokens, PKCE checked), tokens stored
// encrypted, Test Connection and real mail through an SMTP server that requires XOAUTH2 and validates the
// bearer token at that authorization server; token refresh under load; per-server and app-wide failures.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import { TokenStore } from '../../src/oauth/token-store.js';
import { accessTokenContext, refreshTokenContext } from '../../src/oauth/connections.js';
import { connectionOf } from '../helpers/oauth-connections.js';
import { dialects } from '../helpers/databases.js';
import { dumpDatabase } from '../helpers/db-dump.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { authorize, confirm, connectOutlook, signIn, startConnect, type BrowserSession } from '../helpers/outlook.js';
import { testDispatcher, type TestDispatcher } from '../helpers/outgoing.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';
import { microsoftError } from '../peers/identity-protocol.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

const CLIENT_ID = '3f2504e0-4f89-41d3-9a0c-0305e82c3301';
const CLIENT_SECRET = 'client-secret-value~0123456789abcdefghij';
const MAILBOX = 'alice@example.test';

for (const dialect of dialects) {
  describe(`Outlook OAuth (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let idp: IdentityServer;
    let sink: SmtpSink;
    let d: TestDispatcher;
    let admin: BrowserSession;
    let serverId: number;

    const api = async (method: 'GET' | 'POST' | 'PUT' | 'PATCH', url: string, payload?: object, s: BrowserSession = admin) => {
      const res = await http.inject({ method, url, payload, headers: { cookie: s.cookie, 'x-csrf-token': s.csrfToken } });
      return { status: res.statusCode, body: res.json<Record<string, unknown>>(), text: res.body };
    };
    const server = async () => (await api('GET', `/api/v1/outgoing-servers/${serverId}`)).body as { token: { status: string; account: string | null; error: { code: string; message: string } | null; appProblem: { message: string } | null } };
    const refreshCount = () => idp.tokenRequests.filter((r) => r.grantType === 'refresh_token').length;
    const expireAccessToken = () =>
      t.app.database.db.updateTable('oauth_access_tokens').set({ expires_at: Date.now() + 60_000 }).where('connection_id', 'in', (eb) => eb.selectFrom('oauth_connections').select('id').where('server_kind', '=', 'outgoing').where('server_id', '=', serverId)).execute();

    before(async () => {
      idp = await startIdentityServer();
      sink = await startSmtpSink({ auth: 'xoauth2', identityUrl: idp.url, tls: 'starttls' });
      t = await startTestApp(dialect);
      http = await t.app.http();
      const user = await t.createUser('admin', 'admin');
      admin = await signIn(http, 'admin', user.password);
      await t.app.services.parameters.set('web.base.url', 'https://juniper.example.com', cliActor);
      await t.app.services.parameters.set('microsoft_outlook.endpoint', `${idp.url}/common/oauth2/v2.0/`, cliActor);
      const settings = await api('PUT', '/api/v1/settings', { customEmailServers: true, outlook: { enabled: true, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET } });
      assert.equal(settings.status, 200, settings.text);
      // Pacing off: the loopback sink is no Microsoft 365 (the Outlook default of 30 a minute would pace 500 mails over 17 minutes).
      const created = await api('POST', '/api/v1/outgoing-servers', { name: 'Outlook', auth: 'outlook', username: MAILBOX, host: '127.0.0.1', port: sink.port, allowSelfSigned: true, ratePerMinute: 0 });
      assert.equal(created.status, 201, created.text);
      serverId = created.body.id as number;
      d = testDispatcher(t.app);
    });
    after(async () => {
      await d.close();
      await t.close();
      await sink.stop();
      await idp.stop();
    });

    it('presets an Outlook server: STARTTLS, no password, From filter = the mailbox', async () => {
      const s = (await api('GET', `/api/v1/outgoing-servers/${serverId}`)).body;
      assert.equal(s.security, 'starttls');
      assert.equal(s.fromFilter, MAILBOX);
      assert.equal(s.hasPassword, false);
      const preset = await api('POST', '/api/v1/outgoing-servers', { name: 'preset', auth: 'outlook', username: 'bob@example.test' });
      assert.equal(preset.body.host, 'smtp.office365.com');
      assert.equal(preset.body.port, 587);
      assert.deepEqual([s.transport, s.activeTransport, s.transportSwitch], ['auto', 'smtp', null], 'a new Outlook server is auto');
      const graphWithPassword = await api('POST', '/api/v1/outgoing-servers', { name: 'bad', auth: 'password', host: 'smtp.example.com', username: 'bob', password: 'x', transport: 'graph' });
      assert.equal(graphWithPassword.status, 400);
      assert.match(String((graphWithPassword.body.error as { message: string }).message), /Transport graph sends through Microsoft Graph with the Outlook connection/);
      const withPassword = await api('POST', '/api/v1/outgoing-servers', { name: 'bad', auth: 'outlook', username: 'bob@example.test', password: 'x' });
      assert.equal(withPassword.status, 400);
      assert.match(String((withPassword.body.error as { message: string }).message), /password empty/);
    });

    it('connects: authorize URL with PKCE S256, login_hint and select_account; confirm stores tokens encrypted; Token Valid', async () => {
      const url = new URL(await startConnect(http, admin, 'outgoing', serverId));
      assert.equal(url.origin + url.pathname, `${idp.url}/common/oauth2/v2.0/authorize`);
      const q = url.searchParams;
      assert.equal(q.get('client_id'), CLIENT_ID);
      assert.equal(q.get('response_type'), 'code');
      assert.equal(q.get('redirect_uri'), 'https://juniper.example.com/microsoft_outlook/confirm');
      assert.equal(q.get('code_challenge_method'), 'S256');
      assert.ok((q.get('code_challenge') ?? '').length >= 43);
      assert.equal(q.get('login_hint'), MAILBOX);
      assert.equal(q.get('prompt'), 'select_account');
      // A new Outlook server sends by SMTP until Microsoft refuses SMTP AUTH (transport auto): one consent covers Graph too.
      assert.equal(q.get('scope'), 'offline_access openid email https://outlook.office.com/SMTP.Send https://graph.microsoft.com/Mail.Send https://graph.microsoft.com/Mail.Send.Shared https://graph.microsoft.com/User.Read');
      const smtpOnly = await api('POST', '/api/v1/outgoing-servers', { name: 'smtp only', auth: 'outlook', username: 'bob@example.test', transport: 'smtp' });
      assert.equal(smtpOnly.status, 201, smtpOnly.text);
      assert.deepEqual([smtpOnly.body.transport, smtpOnly.body.activeTransport, smtpOnly.body.saveToSentItems], ['smtp', 'smtp', true]);
      const smtpScope = new URL(await startConnect(http, admin, 'outgoing', smtpOnly.body.id as number)).searchParams.get('scope');
      assert.equal(smtpScope, 'offline_access openid email https://outlook.office.com/SMTP.Send', 'an SMTP-only server asks for SMTP alone');
      const res = await confirm(http, admin, await authorize(url.toString()));
      assert.equal(res.statusCode, 303, res.body);
      assert.equal(res.headers.location, `/outgoing-servers/${serverId}?connected=1`);
      const s = await server();
      assert.equal(s.token.status, 'valid');
      assert.equal(s.token.account, MAILBOX);

      const row = await connectionOf(t.app.database.db, 'outgoing', serverId);
      const refresh = t.app.vault.decrypt(row.refresh_token_enc!, refreshTokenContext('outgoing', serverId));
      const access = t.app.vault.decrypt(row.access_token_enc!, accessTokenContext('outgoing', serverId));
      assert.ok(refresh.length > 10 && access.length > 100);
      const dump = JSON.stringify([await t.app.database.db.selectFrom('oauth_connections').selectAll().execute(), await t.app.database.db.selectFrom('oauth_access_tokens').selectAll().execute()]);
      assert.ok(!dump.includes(refresh) && !dump.includes(access), 'tokens are stored only encrypted');
      if (t.config.database.kind === 'sqlite') {
        for (const f of [t.config.database.file, `${t.config.database.file}-wal`].filter((p) => fs.existsSync(p))) {
          const bytes = fs.readFileSync(f);
          assert.ok(!bytes.includes(refresh) && !bytes.includes(access) && !bytes.includes(CLIENT_SECRET), `no raw secret in ${f}`);
        }
      }
      const body = (await api('GET', `/api/v1/outgoing-servers/${serverId}`)).text + (await api('GET', '/api/v1/settings')).text;
      assert.ok(!body.includes(refresh) && !body.includes(access) && !body.includes(CLIENT_SECRET), 'no secret in API responses');
      assert.ok(![refresh, access, CLIENT_SECRET].some((secret) => t.logs().includes(secret)), 'no secret in logs');
    });

    it('Test Connection and a real mail go through the XOAUTH2 server with the stored token', async () => {
      const before = sink.messages.length;
      const test = await api('POST', `/api/v1/outgoing-servers/${serverId}/test`);
      assert.equal(test.body.ok, true, test.text);
      assert.equal(sink.messages.length, before, 'Test Connection delivers nothing');
      await t.app.services.outbox.enqueue({ from: MAILBOX, to: ['customer@client.test'], subject: 'via oauth', text: 'hi' }, null, cliActor);
      await d.drain();
      assert.equal(sink.messages.length, before + 1);
      assert.equal(sink.messages[before]!.user, MAILBOX);
      assert.ok(sink.authAttempts.some((a) => a.method === 'XOAUTH2' && a.ok));
    });

    it('refuses forged, replayed, expired and other-user states with 403 and changes nothing', async () => {
      const okQuery = await authorize(await startConnect(http, admin, 'outgoing', serverId));
      const forged = new URLSearchParams(okQuery);
      forged.set('state', 'forged-state-value');
      const beforeForged = await dumpDatabase(t.app.database.db);
      assert.equal((await confirm(http, admin, forged)).statusCode, 403);
      assert.deepEqual(await dumpDatabase(t.app.database.db), beforeForged, 'a forged state wrote nothing');

      const other = await t.createUser('mallory', 'user');
      const mallory = await signIn(http, 'mallory', other.password);
      const beforeStolen = await dumpDatabase(t.app.database.db);
      const stolen = await confirm(http, mallory, okQuery);
      assert.equal(stolen.statusCode, 403);
      assert.match(stolen.body, /another Juniper user/);
      assert.deepEqual(await dumpDatabase(t.app.database.db), beforeStolen, "another user's state wrote nothing");

      const tokenBefore = (await connectionOf(t.app.database.db, 'outgoing', serverId)).refresh_token_enc;
      assert.equal((await confirm(http, admin, okQuery)).statusCode, 303, 'the rightful user can still use it');
      const beforeReplay = await dumpDatabase(t.app.database.db);
      const replay = await confirm(http, admin, okQuery);
      assert.equal(replay.statusCode, 403);
      assert.match(replay.body, /already used/);
      assert.deepEqual(await dumpDatabase(t.app.database.db), beforeReplay, 'a replayed state wrote nothing');

      const late = await authorize(await startConnect(http, admin, 'outgoing', serverId));
      await t.app.database.db.updateTable('oauth_states').set({ expires_at: Date.now() - 1 }).where('used_at', 'is', null).execute();
      const beforeExpired = await dumpDatabase(t.app.database.db);
      const expired = await confirm(http, admin, late);
      assert.equal(expired.statusCode, 403);
      assert.match(expired.body, /expired/);
      assert.deepEqual(await dumpDatabase(t.app.database.db), beforeExpired, 'an expired state wrote nothing');
      const tokenAfter = (await connectionOf(t.app.database.db, 'outgoing', serverId)).refresh_token_enc;
      assert.notEqual(tokenAfter, null);
      assert.notEqual(tokenBefore, null);
      assert.equal((await server()).token.status, 'valid', 'refused answers changed nothing');
    });

    it("refuses other-server states: a server that changed hands since the sign-in began, and one server's state with another's code", async () => {
      const tokensOf = (id: number) => connectionOf(t.app.database.db, 'outgoing', id);
      const jane = await t.createUser('jane-outlook', 'user');
      const john = await t.createUser('john-outlook', 'user');
      const janeSession = await signIn(http, 'jane-outlook', jane.password);
      // A user's server at the loopback sink needs the admin's allow-list (the address policy for users' servers).
      await t.app.services.parameters.set('mail.server.allowed_private_hosts', '127.0.0.1', cliActor);
      // And its port: the sink listens on one the system picked, which the admin allows as a relay's own port.
      await t.app.services.parameters.set('mail.server.allowed_ports', `587, ${sink.port}`, cliActor);
      const personal = await api('POST', '/api/v1/outgoing-servers', { name: 'jane personal', auth: 'outlook', username: 'jane-outlook@example.com', host: '127.0.0.1', port: sink.port, allowSelfSigned: true, ownerUserId: jane.id });
      assert.equal(personal.status, 201, personal.text);
      const personalId = personal.body.id as number;

      // jane starts; meanwhile an admin gives the server to john: jane's answer must not connect john's server.
      const janeQuery = await authorize(await startConnect(http, janeSession, 'outgoing', personalId));
      assert.equal((await api('PATCH', `/api/v1/outgoing-servers/${personalId}`, { ownerUserId: john.id })).status, 200);
      const before = await tokensOf(personalId);
      const handedOver = await confirm(http, janeSession, janeQuery);
      assert.equal(handedOver.statusCode, 403, handedOver.body);
      assert.deepEqual(await tokensOf(personalId), before, 'no token was written to the server jane no longer owns');
      assert.equal(before.status, 'missing');

      // The state of one server with the code Microsoft issued for another: the PKCE verifier does not match.
      const stateOfA = (await authorize(await startConnect(http, admin, 'outgoing', serverId))).get('state')!;
      const codeOfB = await authorize(await startConnect(http, admin, 'outgoing', personalId));
      const [beforeA, beforeB] = [await tokensOf(serverId), await tokensOf(personalId)];
      const swapped = await confirm(http, admin, new URLSearchParams({ state: stateOfA, code: codeOfB.get('code')! }));
      // The identity server refuses the exchange (invalid_grant, AADSTS501481): Juniper reports the provider's refusal.
      assert.equal(swapped.statusCode, 502, swapped.body.slice(0, 300));
      assert.match(swapped.body, /<h1>Outlook account not connected for Outlook<\/h1>[\s\S]*PKCE/, 'a page, not JSON, for the browser');
      assert.deepEqual([await tokensOf(serverId), await tokensOf(personalId)], [beforeA, beforeB], 'neither server got tokens');
    });

    it('explains a declined consent from Microsoft with a page linking back to the server', async () => {
      const q = await authorize(await startConnect(http, admin, 'outgoing', serverId));
      const denied = new URLSearchParams({ state: q.get('state')!, error: 'access_denied', error_description: 'AADSTS65004: User declined to consent to access the app.' });
      const res = await confirm(http, admin, denied);
      assert.equal(res.statusCode, 400);
      assert.match(res.body, /declined/i);
      assert.match(res.body, new RegExp(`href="/outgoing-servers/${serverId}"`));
      assert.equal((await server()).token.status, 'valid');
    });

    it('refreshes an expiring token exactly once for 500 mails with 8 concurrent senders and two processes, and stores the rotated refresh token', async () => {
      await expireAccessToken();
      const refreshesBefore = refreshCount();
      const sentBefore = sink.messages.length;
      for (let i = 0; i < 500; i++) await t.app.services.queue.enqueue({ from: MAILBOX, to: [`r${i}@client.test`], cc: [], bcc: [], replyTo: null, subject: `load ${i}`, text: 'x', html: null, headers: {}, attachments: [], serverId: null, massMailing: false }, cliActor);
      // A second token store on the same database stands for another worker process.
      const otherProcess = new TokenStore({ db: t.app.database.db, vault: t.app.vault, settings: t.app.services.settings, appStatus: t.app.services.oauthAppStatus, log: t.app.logger });
      const senders = Array.from({ length: 8 }, (_, i) => (i % 2 ? otherProcess : t.app.services.tokens).accessToken('outgoing', serverId));
      const tokens = await Promise.all(senders);
      await Promise.all([d.drain(), testDispatcher(t.app, 'second-worker').drain()]);
      assert.equal(refreshCount() - refreshesBefore, 1, 'exactly one refresh');
      assert.equal(new Set(tokens.map((x) => x.accessToken)).size, 1, 'every sender got the same new token');
      assert.equal(sink.messages.length - sentBefore, 500);
      // The identity server refuses a refresh token once used: a renew now succeeds only with the rotated one.
      await t.app.services.tokens.accessToken('outgoing', serverId, { renew: true });
      assert.equal((await server()).token.status, 'valid');
    });

    it('invalid_grant (AADSTS700082): the server needs reconnecting, mails wait with the reason, reconnecting sends them', async () => {
      idp.failNextToken({ status: 400, body: microsoftError('invalid_grant', 700082, 'The refresh token has expired due to inactivity.') });
      await expireAccessToken();
      await assert.rejects(t.app.services.tokens.accessToken('outgoing', serverId));
      const s = await server();
      assert.equal(s.token.status, 'needs_reconnect');
      assert.equal(s.token.error?.code, 'AADSTS700082');
      const { id } = await t.app.services.outbox.enqueue({ from: MAILBOX, to: ['late@client.test'], subject: 'waits', text: 'x' }, null, cliActor);
      await d.drain();
      let mail = (await api('GET', `/api/v1/mails/${id}`)).body;
      assert.equal(mail.state, 'queued');
      assert.match(String(mail.waitingReason), /reconnect/i);
      const before = sink.messages.length;
      assert.equal((await connectOutlook(http, admin, 'outgoing', serverId)).statusCode, 303);
      assert.equal((await server()).token.status, 'valid');
      await d.drain();
      mail = (await api('GET', `/api/v1/mails/${id}`)).body;
      assert.equal(mail.state, 'sent', JSON.stringify(mail));
      assert.equal(sink.messages.length, before + 1);
    });

    it("forgets the Outlook connection when the server moves to another host, port or security, so its token goes to no endpoint it was not connected for", async () => {
      const trap = await startSmtpSink({ auth: 'xoauth2', identityUrl: idp.url, tls: 'starttls' });
      try {
        const created = await api('POST', '/api/v1/outgoing-servers', { name: 'Outlook moved', auth: 'outlook', username: 'carol@example.test', host: '127.0.0.1', port: sink.port, allowSelfSigned: true, ratePerMinute: 0 });
        assert.equal(created.status, 201, created.text);
        const id = created.body.id as number;
        const url = `/api/v1/outgoing-servers/${id}`;
        const token = async () => ((await api('GET', url)).body as { token: { status: string } }).token.status;
        assert.equal((await connectOutlook(http, admin, 'outgoing', id)).statusCode, 303);
        assert.equal(await token(), 'valid');
        // A change that leaves the endpoint as it is keeps the connection.
        assert.equal((await api('PATCH', url, { name: 'Outlook still here', host: '127.0.0.1', port: sink.port, priority: 7 })).status, 200);
        assert.equal(await token(), 'valid');

        const moved = await api('PATCH', url, { port: trap.port });
        assert.equal(moved.status, 200, moved.text);
        assert.equal((moved.body.token as { status: string }).status, 'missing', 'the server needs Connect again');
        assert.equal((await connectionOf(t.app.database.db, 'outgoing', id)).status, 'missing');
        const test = await api('POST', `${url}/test`);
        assert.equal(test.body.ok, false, test.text);
        assert.equal(trap.authAttempts.length, 0, 'no XOAUTH2 token reached the new port');

        // Connected again, for the new endpoint, it sends there.
        assert.equal((await connectOutlook(http, admin, 'outgoing', id)).statusCode, 303);
        assert.equal((await api('POST', `${url}/test`)).body.ok, true);
        assert.deepEqual(trap.authAttempts.map((a) => [a.method, a.user, a.ok]), [['XOAUTH2', 'carol@example.test', true]]);
        for (const move of [{ host: 'localhost' }, { security: 'ssl', port: 465 }, { allowSelfSigned: false }, { allowSelfSigned: true }]) {
          assert.equal((await connectOutlook(http, admin, 'outgoing', id)).statusCode, 303);
          const r = await api('PATCH', url, move);
          assert.equal(r.status, 200, r.text);
          const expected = move.allowSelfSigned === false ? 'valid' : 'missing';
          assert.equal((r.body.token as { status: string }).status, expected, `${JSON.stringify(move)}: turning certificate checks on keeps it, every other move forgets it`);
          if (move.host || move.security) assert.equal((await api('PATCH', url, { host: '127.0.0.1', port: trap.port, security: 'starttls' })).status, 200);
        }
      } finally {
        await trap.stop();
      }
    });

    it('an expired client secret (AADSTS7000222) shows the app-level problem on every Outlook server until the secret changes', async () => {
      const second = await api('POST', '/api/v1/outgoing-servers', { name: 'Outlook 2', auth: 'outlook', username: 'bob@example.test', host: '127.0.0.1', port: sink.port, allowSelfSigned: true });
      idp.failNextToken({ status: 401, body: microsoftError('invalid_client', 7000222, 'The provided client secret keys for app are expired.') });
      await expireAccessToken();
      await assert.rejects(t.app.services.tokens.accessToken('outgoing', serverId));
      const list = (await api('GET', '/api/v1/outgoing-servers')).body as unknown as { id: number; auth: string; token: { appProblem: { code: string; message: string } | null } }[];
      const outlook = list.filter((s) => s.auth === 'outlook');
      assert.ok(outlook.length >= 2 && outlook.some((s) => s.id === second.body.id));
      for (const s of outlook) {
        assert.equal(s.token.appProblem?.code, 'AADSTS7000222', `server ${s.id}`);
        assert.match(s.token.appProblem.message, /secret/i);
      }
      const page = await http.inject({ url: '/outgoing-servers', headers: { cookie: admin.cookie, accept: 'text/html' } });
      assert.match(page.body, /Outlook app credentials need attention/, 'the list page shows it too, not a green tag');
      assert.doesNotMatch(page.body, /Outlook Token Valid/);
      await api('PUT', '/api/v1/settings', { outlook: { clientSecret: `${CLIENT_SECRET}-new` } });
      assert.equal((await server()).token.appProblem, null, 'new credentials clear the problem');
    });
  });
}
