// Outlook (XOAUTH2) incoming servers against a real Dovecot whose oauth2 passdb checks every token at the
// loopback identity server: the tokens come from a TokenProvider double that mints real ones there, so a
// login succeeds or fails exactly as Dovecot decides. One database is enough: nothing here is SQL.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import type { TokenProvider } from '../../src/oauth/token-provider.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { corpus, deliverAll, seenByUid } from '../helpers/incoming.js';
import { startDovecot, type Dovecot } from '../peers/dovecot.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';

const MAILBOX = 'orders@example.test';
// Only for looking at flags from the test; Juniper signs in with tokens.
const INSPECT_PASSWORD = 'inspect-only';

type Token = 'valid' | 'expired' | 'other-user' | 'garbage';

describe('Outlook (XOAUTH2) incoming servers against Dovecot with the identity server', () => {
  let idp: IdentityServer;
  let dovecot: Dovecot;
  let t: TestApp;
  let http: FastifyInstance;
  let key: string;
  const issued: string[] = [];

  /** Hands out the scripted tokens in order (the last one repeats) and records every request. */
  const tokens = (...script: Token[]) => {
    const calls: { kind: string; serverId: number; renew: boolean }[] = [];
    const provider: TokenProvider = {
      async accessToken(kind, serverId, options) {
        calls.push({ kind, serverId, renew: options?.renew === true });
        const which = script[Math.min(calls.length - 1, script.length - 1)]!;
        const accessToken =
          which === 'garbage' ? 'not-a-token' : await idp.mint(which === 'other-user' ? 'someone@example.test' : MAILBOX, which === 'expired' ? -60 : 300);
        issued.push(accessToken);
        return { accessToken, expiresAt: Date.now() + 300_000 };
      },
    };
    return { provider, calls };
  };

  const api = async (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: object) => {
    const res = await http.inject({ method, url, payload, headers: { authorization: `Bearer ${key}` } });
    return { status: res.statusCode, body: res.json<Record<string, unknown>>(), text: res.body };
  };

  before(async () => {
    idp = await startIdentityServer({});
    dovecot = await startDovecot({ identityUrl: idp.url, users: { [MAILBOX]: INSPECT_PASSWORD } });
    t = await startTestApp('sqlite');
    http = await t.app.http();
    key = (await t.createUser('admin', 'admin')).apiKey;
    // Outlook servers are created only while Microsoft Outlook is installed (Apps).
    await t.app.services.settings.update({ outlook: { enabled: true } }, cliActor);
  });
  after(async () => {
    const logs = t.logs();
    for (const token of issued.filter((x) => x.length > 20)) {
      assert.ok(!logs.includes(token), 'no access token reaches the logs');
      assert.ok(!logs.includes(Buffer.from(`user=${MAILBOX}\x01auth=Bearer ${token}\x01\x01`).toString('base64')), 'nor its XOAUTH2 form');
    }
    assert.ok(issued.length > 5);
    await t.close();
    await dovecot.stop();
    await idp.stop();
  });

  it('applies the Outlook rules: preset outlook.office365.com:993 SSL, mailbox username, no password, TLS required', async () => {
    const preset = await api('POST', '/api/v1/incoming-servers', { name: 'Outlook', auth: 'outlook', username: 'Orders@Example.test' });
    assert.equal(preset.status, 201, preset.text);
    assert.deepEqual([preset.body.host, preset.body.port, preset.body.security, preset.body.username, preset.body.hasPassword, preset.body.state], ['outlook.office365.com', 993, 'ssl', 'Orders@example.test', false, 'draft']);
    assert.deepEqual((preset.body.token as Record<string, unknown>).status, 'missing');
    const refusals: [object, RegExp][] = [
      [{ auth: 'outlook' }, /needs the Microsoft 365 mailbox as username/],
      [{ auth: 'outlook', username: MAILBOX, password: 'x' }, /Leave the password empty/],
      [{ auth: 'outlook', username: MAILBOX, security: 'none', port: 143 }, /needs an encrypted connection/],
      [{ auth: 'password', host: 'imap.example.test', username: 'x@example.test' }, /needs a password/],
      [{ auth: 'password', host: 'imap.example.test', port: 993, security: 'starttls', username: 'x', password: 'y' }, /Port 993 expects SSL\/TLS/],
    ];
    for (const [body, message] of refusals) {
      const r = await api('POST', '/api/v1/incoming-servers', { name: 'bad', ...body });
      assert.equal(r.status, 400, r.text);
      assert.match(String((r.body.error as Record<string, unknown>).message), message);
    }
  });

  const outlookServer = async () => {
    const r = await api('POST', '/api/v1/incoming-servers', { name: 'Orders', auth: 'outlook', username: MAILBOX, host: '127.0.0.1', port: dovecot.imapsPort, security: 'ssl', allowSelfSigned: true });
    assert.equal(r.status, 201, r.text);
    return t.app.services.incomingServers.get(r.body.id as number);
  };

  it('Test & Confirm signs in with XOAUTH2 and a token Dovecot validates at the identity server, then fetches with it', async () => {
    const server = await outlookServer();
    const { provider, calls } = tokens('valid');
    const result = await t.app.services.incoming.testAndConfirm(server, { tokens: provider });
    assert.equal(result.ok, true, result.message);
    assert.match(result.message, /logged in as orders@example\.test/);
    assert.deepEqual(calls, [{ kind: 'incoming', serverId: server.id, renew: false }]);

    await deliverAll(dovecot, MAILBOX, corpus(12, MAILBOX).map((m) => m.raw));
    const counts = await t.app.services.incoming.fetchNow(await t.app.services.incomingServers.get(server.id), {}, { tokens: provider });
    assert.deepEqual(counts, { fetched: 12, stored: 12, duplicates: 0, quarantined: 0 });
    assert.ok([...(await seenByUid(dovecot, MAILBOX, INSPECT_PASSWORD)).values()].every(Boolean));
  });

  it('asks the token provider to renew once when the server refuses the first token', async () => {
    const server = await outlookServer();
    const { provider, calls } = tokens('expired', 'valid');
    const result = await t.app.services.incoming.testAndConfirm(server, { tokens: provider });
    assert.equal(result.ok, true, result.message);
    assert.deepEqual(calls.map((c) => c.renew), [false, true]);
  });

  it('reports a refused token as an authentication problem, on Test & Confirm and on every failing fetch', async () => {
    const server = await outlookServer();
    // Dovecot answers refused logins in 0.5 s rounds: both kinds side by side.
    await Promise.all(
      (['garbage', 'other-user'] as const).map(async (refused) => {
        const { provider, calls } = tokens(refused);
        const result = await t.app.services.incoming.testAndConfirm(server, { tokens: provider });
        assert.equal(result.ok, false);
        assert.equal(result.stage, 'auth');
        assert.match(result.message, /Authentication refused for orders@example\.test: the server did not accept the OAuth2 access token \("NO \[AUTHENTICATIONFAILED\]/);
        assert.match(result.message, /Reconnect the Outlook account/);
        assert.deepEqual(calls.map((c) => c.renew), [false, true], 'renewed once, then gave up');
      }),
    );
    assert.equal((await t.app.services.incomingServers.get(server.id)).state, 'draft');

    // A confirmed server whose token stops working: the fetch fails, the server shows the error and since when.
    await t.app.services.incoming.testAndConfirm(server, { tokens: tokens('valid').provider });
    const confirmed = await t.app.services.incomingServers.get(server.id);
    const failing = tokens('garbage').provider;
    await assert.rejects(t.app.services.incoming.fetchNow(confirmed, {}, { tokens: failing }), { code: 'JUNIPER_ERR_IMAP_AUTH' });
    const first = await api('GET', `/api/v1/incoming-servers/${server.id}`);
    assert.match(String(first.body.lastError), /OAuth2 access token/);
    assert.ok(first.body.errorSince);
    await assert.rejects(t.app.services.incoming.fetchNow(confirmed, {}, { tokens: failing }), { code: 'JUNIPER_ERR_IMAP_AUTH' });
    assert.equal((await api('GET', `/api/v1/incoming-servers/${server.id}`)).body.errorSince, first.body.errorSince, 'the failure run keeps its start time');
  });

  it('without a connected Outlook account, Test & Confirm says to connect it (the real token store)', async () => {
    const server = await outlookServer();
    const r = await api('POST', `/api/v1/incoming-servers/${server.id}/test`);
    assert.equal(r.body.ok, false, r.text);
    assert.equal(r.body.stage, 'credentials');
    assert.match(String(r.body.message), /Outlook/);
    assert.equal(r.body.state, 'draft');
  });
});
