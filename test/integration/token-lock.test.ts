// The token refresh lease across processes, on both databases, against the loopback identity server: a
// holder whose lease expired while its refresh hung (its clock runs behind, as on another machine) cannot
// release the lease another process took over, so a third process waits instead of refreshing with the same
// refresh token, and the identity server sees that refresh token redeemed once. The event list stays bounded.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import { TokenStore, defaultTokenStoreOptions, type TokenStoreOptions } from '../../src/oauth/token-store.js';
import { connectionOf, seedConnection, updateConnection } from '../helpers/oauth-connections.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';

const MAILBOX = 'alice@example.test';

async function until(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

for (const dialect of dialects) {
  describe(`token refresh lease between processes (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let idp: IdentityServer;
    let serverId: number;
    let incomingId: number;

    const store = (options: Partial<TokenStoreOptions> & { now?: () => number } = {}) => {
      const { now, ...rest } = options;
      const { services } = t.app;
      return new TokenStore(
        { db: t.app.database.db, vault: t.app.vault, settings: services.settings, appStatus: services.oauthAppStatus, log: t.app.logger, ...(now ? { now } : {}) },
        { ...defaultTokenStoreOptions, lockMs: 5000, pollMs: 20, refreshTimeoutMs: 1500, ...rest },
      );
    };
    const row = () => connectionOf(t.app.database.db, 'outgoing', serverId);
    /** A fresh refresh token at the identity server and no access token: the next use must refresh. */
    const seed = async () => {
      await seedConnection(t.app.database.db, t.app.vault, 'outgoing', serverId, idp.issueRefreshToken(MAILBOX), { account: MAILBOX });
    };

    before(async () => {
      idp = await startIdentityServer();
      t = await startTestApp(dialect);
      http = await t.app.http();
      const { apiKey } = await t.createUser('admin', 'admin');
      const api = async (method: 'POST' | 'PUT', url: string, payload: object) => {
        const res = await http.inject({ method, url, payload, headers: { authorization: `Bearer ${apiKey}` } });
        return { status: res.statusCode, body: res.json<Record<string, unknown>>(), text: res.body };
      };
      await t.app.services.parameters.set('microsoft_outlook.endpoint', `${idp.url}/common/oauth2/v2.0/`, cliActor);
      const settings = await api('PUT', '/api/v1/settings', { customEmailServers: true, outlook: { enabled: true, clientId: '3f2504e0-4f89-41d3-9a0c-0305e82c3302', clientSecret: 'client-secret-value~lock-test' } });
      assert.equal(settings.status, 200, settings.text);
      const created = await api('POST', '/api/v1/outgoing-servers', { name: 'Outlook', auth: 'outlook', username: MAILBOX, host: '127.0.0.1', port: 2525 });
      assert.equal(created.status, 201, created.text);
      serverId = created.body.id as number;
      const incoming = await api('POST', '/api/v1/incoming-servers', { name: 'Orders', auth: 'outlook', username: MAILBOX, host: '127.0.0.1', port: 993, security: 'ssl' });
      assert.equal(incoming.status, 201, incoming.text);
      incomingId = incoming.body.id as number;
    });
    after(async () => {
      idp.setTokenOutage(null);
      await t.close();
      await idp.stop();
    });

    it("a late release by a holder whose lease expired does not free the lease another process took over; the refresh token is redeemed once", async () => {
      await seed();
      const redeemedBefore = idp.tokenRequests.filter((r) => r.grantType === 'refresh_token' && r.status === 200).length;
      // A runs two minutes behind (another machine): the lease it writes has already expired as B and C see it.
      // A gives up on the identity server after 1.5 s; B and C wait longer, so B's refresh outlives A's.
      const a = store({ now: () => Date.now() - 120_000 });
      const b = store({ refreshTimeoutMs: 10_000, lockMs: 20_000 });
      const c = store({ refreshTimeoutMs: 10_000, lockMs: 20_000 });
      idp.setTokenOutage('hang');
      const aDone = a.accessToken('outgoing', serverId).then(
        () => undefined,
        (err: unknown) => err,
      );
      await until(() => idp.heldTokenRequests === 1, "A's refresh to reach the identity server");
      const aOwner = (await row()).lock_owner;
      assert.ok(aOwner, 'A holds the lease');

      const bDone = b.accessToken('outgoing', serverId);
      await until(async () => {
        const r = await row();
        return r.lock_owner !== null && r.lock_owner !== aOwner;
      }, 'B to take the expired lease over');
      const bOwner = (await row()).lock_owner;

      // A's refresh times out; it then releases "its" lease, which is B's by now.
      const aError = await aDone;
      assert.ok(aError instanceof Error, 'A gave up');
      assert.match(aError.message, /did not answer within 1\.5 s/);
      const afterA = await row();
      assert.equal(afterA.lock_owner, bOwner, "A's late release left B's lease alone");
      assert.ok(afterA.lock_until !== null && afterA.lock_until > Date.now());

      // C arrives while B's refresh still hangs: it must wait for B, not refresh with the same token.
      const cDone = c.accessToken('outgoing', serverId);
      await until(() => idp.heldTokenRequests === 1, "A's abandoned request to be gone");
      await new Promise((r) => setTimeout(r, 200)); // C polls every 20 ms meanwhile
      assert.equal(idp.heldTokenRequests, 1, 'only B is refreshing');

      idp.setTokenOutage(null);
      const [bToken, cToken] = await Promise.all([bDone, cDone]);
      assert.equal(cToken.accessToken, bToken.accessToken, "C uses B's new token");
      const refreshes = idp.tokenRequests.filter((r) => r.grantType === 'refresh_token');
      assert.equal(refreshes.filter((r) => r.status === 200).length - redeemedBefore, 1, 'the refresh token was redeemed once');
      assert.ok(!refreshes.some((r) => r.error === 'invalid_grant'), 'nobody used a refresh token twice');
      const final = await row();
      assert.equal(final.status, 'valid');
      assert.equal(final.lock_owner, null, 'B released its own lease');
      assert.equal(final.lock_until, null);
      assert.deepEqual(a.events.map((e) => e.outcome), ['transient']);
      assert.deepEqual(b.events.map((e) => e.outcome), ['refreshed']);
      assert.deepEqual(c.events, [], 'C did not refresh');
      assert.match(t.logs(), /outlasted its lease and another process took it over/);
    });

    it("keeps only the most recent refresh events and counts every one; an incoming server's connection has its own lease", async () => {
      await seed();
      await seedConnection(t.app.database.db, t.app.vault, 'incoming', incomingId, idp.issueRefreshToken(MAILBOX));
      const s = store({ keepEvents: 3 });
      for (let i = 0; i < 3; i++) await s.accessToken('outgoing', serverId, { renew: true });
      for (let i = 0; i < 2; i++) await s.accessToken('incoming', incomingId, { renew: true });
      assert.equal(s.events.length, 3);
      assert.deepEqual(s.events.map((e) => e.kind), ['outgoing', 'incoming', 'incoming'], 'the oldest were dropped');
      assert.equal(s.counts.refreshed, 5);
      assert.equal((await row()).status, 'valid', 'each rotated refresh token was stored and used');
      const incoming = await connectionOf(t.app.database.db, 'incoming', incomingId);
      assert.deepEqual([incoming.status, incoming.lock_owner, incoming.lock_until], ['valid', null, null]);
    });

    it('lists for the daily keep-alive the connected servers of both kinds not refreshed for a day, not others', async () => {
      const { db } = t.app.database;
      const now = Date.now();
      const s = store({ now: () => now });
      await updateConnection(db, 'outgoing', serverId, { status: 'valid', refreshed_at: now - 25 * 3600_000 });
      await updateConnection(db, 'incoming', incomingId, { status: 'valid', refreshed_at: null });
      assert.deepEqual(await s.dueForKeepAlive(), [{ kind: 'outgoing', id: serverId }, { kind: 'incoming', id: incomingId }]);
      await updateConnection(db, 'outgoing', serverId, { refreshed_at: now - 3600_000 });
      await updateConnection(db, 'incoming', incomingId, { status: 'needs_reconnect' });
      assert.deepEqual(await s.dueForKeepAlive(), [], 'refreshed an hour ago, or waiting for a reconnect');
      await updateConnection(db, 'outgoing', serverId, { refreshed_at: now - 25 * 3600_000 });
      await db.updateTable('outgoing_servers').set({ archived_at: now }).where('id', '=', serverId).execute();
      assert.deepEqual(await s.dueForKeepAlive(), [], 'archived');
    });

    it('lists none for the keep-alive while Microsoft Outlook is uninstalled, as a database from before the uninstall was refused holds it', async () => {
      const { db } = t.app.database;
      const now = Date.now();
      const s = store({ now: () => now });
      await db.updateTable('outgoing_servers').set({ archived_at: null }).where('id', '=', serverId).execute();
      await updateConnection(db, 'outgoing', serverId, { status: 'valid', refreshed_at: now - 25 * 3600_000 });
      await updateConnection(db, 'incoming', incomingId, { status: 'valid', refreshed_at: null });
      assert.equal((await s.dueForKeepAlive()).length, 2, 'due while installed');
      // Written directly: the settings model refuses this uninstall while the two servers use Outlook.
      await db.updateTable('settings').set({ value: 'false' }).where('key', '=', 'outlook.enabled').execute();
      try {
        assert.deepEqual(await s.dueForKeepAlive(), [], 'uninstalled: no refresh is asked of Microsoft');
      } finally {
        await db.updateTable('settings').set({ value: 'true' }).where('key', '=', 'outlook.enabled').execute();
      }
      assert.equal((await s.dueForKeepAlive()).length, 2, 'installed again, the keep-alive resumes');
    });
  });
}
