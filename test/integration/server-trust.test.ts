// Issue 8, holes 1 and 2, as attacks over the REST API with real users and API keys, on both databases:
// a user's personal server must never carry anyone else's mail (two real SMTP sinks show where every mail
// went), and a user's server must never reach a private address (a loopback tripwire counts every
// connection, and DNS answers come from a scripted resolver so rebinding needs no real DNS).
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { HostResolver } from '../../src/mail-servers/host-guard.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { dialects } from '../helpers/databases.js';
import { headersOf, testDispatcher, type TestDispatcher } from '../helpers/outgoing.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

const PUBLIC = '93.184.216.34';
const ALLOW = 'mail.server.allowed_private_hosts';

/** A listener on loopback that only counts connections (and closes them at once: it says nothing). */
async function startTripwire(): Promise<{ port: number; connections: () => number; stop: () => Promise<void> }> {
  let count = 0;
  const server = net.createServer((socket) => {
    count++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as net.AddressInfo).port, connections: () => count, stop: () => new Promise((resolve) => server.close(() => resolve())) };
}

/**
 * Scripted DNS: each name answers its list of answers in turn, the last one repeating. `rebind-*` names answer
 * a public address once (the check at save) and loopback from then on; unknown names do not exist.
 */
function scriptedResolver(): HostResolver & { asked: string[] } {
  const answers: Record<string, string[][]> = {
    localhost: [['127.0.0.1', '::1']],
    'loopback.juniper.test': [['127.0.0.1']],
    'sink.juniper.test': [['127.0.0.1']],
    'public.juniper.test': [[PUBLIC]],
  };
  const used = new Map<string, number>();
  const asked: string[] = [];
  const resolve = async (host: string): Promise<string[]> => {
    asked.push(host);
    const list = host.startsWith('rebind-') ? [[PUBLIC], ['127.0.0.1']] : answers[host];
    if (!list) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    const n = used.get(host) ?? 0;
    used.set(host, n + 1);
    return list[Math.min(n, list.length - 1)]!;
  };
  return Object.assign(resolve, { asked });
}

const passwords = { shared: 'shared-pw-123', alice: 'alice-pw-123' };

for (const dialect of dialects) {
  describe(`personal servers and private addresses (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let keys: { admin: string; alice: string; bob: string };
    let ids: { admin: number; alice: number; bob: number };
    let sharedSink: SmtpSink;
    let aliceSink: SmtpSink;
    let tripwire: Awaited<ReturnType<typeof startTripwire>>;
    let d: TestDispatcher;
    let sharedId: number;

    const api = async (who: keyof typeof keys, method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE', url: string, payload?: object) => {
      const res = await http.inject({ method, url, payload, headers: { authorization: `Bearer ${keys[who]}` } });
      const body = res.body === '' ? {} : res.json<Record<string, unknown>>();
      return { status: res.statusCode, body, text: res.body, error: (body.error ?? {}) as { code?: string; message?: string } };
    };
    const setAllowList = async (value: string | null) => {
      const r = value === null ? await api('admin', 'DELETE', `/api/v1/parameters/${ALLOW}`) : await api('admin', 'PUT', `/api/v1/parameters/${ALLOW}`, { value });
      assert.ok(r.status === 200 || r.status === 204 || (value === null && r.status === 404), r.text);
    };
    const outgoing = (host: string, port: number, extra: object = {}) => ({
      name: `smtp ${host}`, host, port, security: 'none', auth: 'password', username: 'alice', password: passwords.alice, fromFilter: 'alice@example.com', ...extra,
    });
    const incoming = (host: string, port: number) => ({ name: `imap ${host}`, host, port, security: 'none', auth: 'password', username: 'alice@example.com', password: passwords.alice });
    const send = async (who: keyof typeof keys, payload: object) => {
      const r = await api(who, 'POST', '/api/v1/mails', { to: ['customer@client.test'], subject: 'hello', text: 'body', ...payload });
      assert.equal(r.status, 202, r.text);
      return r.body.id as number;
    };
    const mail = async (id: number) => (await api('admin', 'GET', `/api/v1/mails/${id}`)).body;

    before(async () => {
      t = await startTestApp(dialect, {}, { resolveHost: scriptedResolver() });
      http = await t.app.http();
      const admin = await t.createUser('admin', 'admin');
      const alice = await t.createUser('alice', 'user');
      const bob = await t.createUser('bob', 'user');
      keys = { admin: admin.apiKey, alice: alice.apiKey, bob: bob.apiKey };
      ids = { admin: admin.id, alice: alice.id, bob: bob.id };
      sharedSink = await startSmtpSink({ auth: 'password', passwords, tls: 'none' });
      aliceSink = await startSmtpSink({ auth: 'password', passwords, tls: 'none' });
      tripwire = await startTripwire();
      d = testDispatcher(t.app);
      for (const [k, v] of Object.entries({ 'mail.catchall.domain': 'example.com', 'mail.default.from': 'notifications' })) {
        assert.equal((await api('admin', 'PUT', `/api/v1/parameters/${k}`, { value: v })).status, 200);
      }
      // An admin may point a shared server at loopback without any allow-list.
      const shared = await api('admin', 'POST', '/api/v1/outgoing-servers', {
        name: 'shared', host: '127.0.0.1', port: sharedSink.port, security: 'none', auth: 'password', username: 'shared', password: passwords.shared, fromFilter: null, priority: 50,
      });
      assert.equal(shared.status, 201, shared.text);
      sharedId = shared.body.id as number;
    });
    after(async () => {
      await d.close();
      await Promise.all([sharedSink.stop(), aliceSink.stop(), tripwire.stop()]);
      await t.close();
    });

    it('an admin can still point a shared server at loopback and test it, with no allow-list set', async () => {
      const r = await api('admin', 'POST', `/api/v1/outgoing-servers/${sharedId}/test`);
      assert.equal(r.body.ok, true, r.text);
    });

    it('refuses a user\'s server at every private form of address, naming host and parameter (the address only when typed in), and connects nowhere', async () => {
      const cases: [string, string][] = [
        ['127.0.0.1', '127.0.0.1'],
        ['localhost', '127.0.0.1'],
        ['10.0.0.1', '10.0.0.1'],
        ['169.254.169.254', '169.254.169.254'],
        ['[::1]', '::1'],
        ['::ffff:127.0.0.1', '::ffff:127.0.0.1'],
        ['loopback.juniper.test', '127.0.0.1'],
      ];
      for (const [host, address] of cases) {
        for (const [kind, body] of [
          ['outgoing', outgoing(host, tripwire.port)],
          ['incoming', incoming(host, tripwire.port)],
        ] as const) {
          const r = await api('alice', 'POST', `/api/v1/${kind}-servers`, body);
          assert.equal(r.status, 400, `${kind} ${host}: ${r.text}`);
          assert.equal(r.error.code, 'JUNIPER_ERR_HOST_NOT_ALLOWED', r.text);
          assert.ok(r.error.message!.includes(host) && r.error.message!.includes(ALLOW), r.error.message);
          // The address only when it was typed in: for a name it would tell what internal names resolve to.
          const literal = host.replace(/^\[|\]$/g, '') === address;
          assert.equal(r.error.message!.includes(address), literal, r.error.message);
        }
      }
      // An admin making the server for alice is held to alice's policy: the owner decides, not who typed it.
      const forAlice = await api('admin', 'POST', '/api/v1/outgoing-servers', { ...outgoing('127.0.0.1', tripwire.port), ownerUserId: ids.alice });
      assert.equal(forAlice.status, 400, forAlice.text);
      // A public server may be saved, but not changed to a private host afterwards.
      const ok = await api('alice', 'POST', '/api/v1/outgoing-servers', outgoing('public.juniper.test', tripwire.port));
      assert.equal(ok.status, 201, ok.text);
      const moved = await api('alice', 'PATCH', `/api/v1/outgoing-servers/${ok.body.id as number}`, { host: '10.0.0.1' });
      assert.equal(moved.status, 400, moved.text);
      assert.equal(moved.error.code, 'JUNIPER_ERR_HOST_NOT_ALLOWED');
      const okIn = await api('alice', 'POST', '/api/v1/incoming-servers', incoming('public.juniper.test', tripwire.port));
      assert.equal(okIn.status, 201, okIn.text);
      const movedIn = await api('alice', 'PATCH', `/api/v1/incoming-servers/${okIn.body.id as number}`, { host: '169.254.169.254' });
      assert.equal(movedIn.status, 400, movedIn.text);
      await api('alice', 'DELETE', `/api/v1/outgoing-servers/${ok.body.id as number}`);
      await api('alice', 'DELETE', `/api/v1/incoming-servers/${okIn.body.id as number}`);
      assert.equal(tripwire.connections(), 0, 'nothing was connected to');
    });

    it('refuses at connect time a name that answered public at save and loopback later (rebinding): test, send and fetch', async () => {
      const out = await api('alice', 'POST', '/api/v1/outgoing-servers', outgoing('rebind-smtp.juniper.test', tripwire.port));
      assert.equal(out.status, 201, out.text);
      const test = await api('alice', 'POST', `/api/v1/outgoing-servers/${out.body.id as number}/test`);
      assert.equal(test.body.ok, false, test.text);
      assert.equal(test.body.stage, 'connect');
      assert.match(test.body.message as string, /rebind-smtp\.juniper\.test resolves to an address that is not public.*mail\.server\.allowed_private_hosts/);

      // Her own mail, forced through it: the dispatcher checks again and does not connect.
      const id = await send('alice', { from: 'alice@example.com', serverId: out.body.id });
      assert.equal(await d.drain(), 1);
      const m = await mail(id);
      // Refused by the address policy: the mail waits for an admin's decision instead of retrying.
      assert.equal(m.state, 'queued', JSON.stringify(m));
      assert.equal(m.failureType, 'host_not_allowed', JSON.stringify(m));
      assert.match(String(m.waitingReason), /resolves to an address that is not public.*Mails wait until an admin allows the host/);

      const inc = await api('alice', 'POST', '/api/v1/incoming-servers', incoming('rebind-imap.juniper.test', tripwire.port));
      assert.equal(inc.status, 201, inc.text);
      const confirm = await api('alice', 'POST', `/api/v1/incoming-servers/${inc.body.id as number}/test`);
      assert.equal(confirm.body.ok, false, confirm.text);
      assert.equal(confirm.body.stage, 'connect');
      assert.equal(confirm.body.state, 'draft');
      assert.equal(confirm.body.serverReply, undefined, 'nothing the target said is echoed');
      // As if it had been confirmed while the name still answered public: the fetch is refused too.
      await t.app.database.db.updateTable('incoming_servers').set({ state: 'confirmed' }).where('id', '=', inc.body.id as number).execute();
      const fetch = await api('alice', 'POST', `/api/v1/incoming-servers/${inc.body.id as number}/fetch?wait=true`);
      assert.equal(fetch.error.code, 'JUNIPER_ERR_HOST_NOT_ALLOWED', fetch.text);
      assert.equal(tripwire.connections(), 0, 'neither test, send nor fetch connected');

      await t.app.database.db.updateTable('outgoing_mails').set({ state: 'failed' }).where('id', '=', id).execute();
      await api('alice', 'DELETE', `/api/v1/outgoing-servers/${out.body.id as number}`);
      await api('alice', 'DELETE', `/api/v1/incoming-servers/${inc.body.id as number}`);
    });

    it('with the allow-list set by an admin, a personal server on loopback works end to end, connecting to the checked address', async () => {
      await setAllowList('127.0.0.1');
      // sink.juniper.test exists only in the scripted resolver: delivery proves the socket went to the checked address.
      const r = await api('alice', 'POST', '/api/v1/outgoing-servers', outgoing('sink.juniper.test', aliceSink.port, { priority: 0 }));
      assert.equal(r.status, 201, r.text);
      const test = await api('alice', 'POST', `/api/v1/outgoing-servers/${r.body.id as number}/test`);
      assert.equal(test.body.ok, true, test.text);
      const before = aliceSink.messages.length;
      const id = await send('alice', { from: '"Alice" <alice@example.com>' });
      assert.equal(await d.drain(), 1);
      assert.equal((await mail(id)).state, 'sent');
      assert.equal(aliceSink.messages.length, before + 1);
      assert.equal(aliceSink.messages.at(-1)!.user, 'alice');
      // Incoming: the allowed name is connected to, at its checked address (the tripwire answers nothing, so the test fails after connecting).
      const inc = await api('alice', 'POST', '/api/v1/incoming-servers', incoming('loopback.juniper.test', tripwire.port));
      assert.equal(inc.status, 201, inc.text);
      const confirm = await api('alice', 'POST', `/api/v1/incoming-servers/${inc.body.id as number}/test`);
      assert.equal(confirm.body.ok, false);
      assert.equal(tripwire.connections(), 1, 'Test & Confirm reached the allowed loopback address');
      await api('alice', 'DELETE', `/api/v1/incoming-servers/${inc.body.id as number}`);
      // Removing the entry stops the server at its next connection.
      await setAllowList(null);
      const test2 = await api('alice', 'POST', `/api/v1/outgoing-servers/${r.body.id as number}/test`);
      assert.equal(test2.body.ok, false, test2.text);
      await api('alice', 'DELETE', `/api/v1/outgoing-servers/${r.body.id as number}`);
    });

    it("never sends anyone else's mail through alice's personal server: bob's, an admin's as alice, notifications, mass mail, a listed domain, priority games", async () => {
      await setAllowList('127.0.0.1');
      const created = await api('alice', 'POST', '/api/v1/outgoing-servers', outgoing('127.0.0.1', aliceSink.port, { priority: 0 }));
      assert.equal(created.status, 201, created.text);
      const personalId = created.body.id as number;
      const aliceBefore = aliceSink.messages.length;
      const sharedBefore = sharedSink.messages.length;

      // Filter games alice could try: the notifications address, a whole domain, another user.
      for (const fromFilter of ['notifications@example.com', 'example.com', 'bob@example.com', null]) {
        const r = await api('alice', 'PATCH', `/api/v1/outgoing-servers/${personalId}`, { fromFilter });
        assert.equal(r.status, 403, `${fromFilter}: ${r.text}`);
      }
      // The dedicated mass-mailing server cannot be a personal server.
      const mass = await api('admin', 'PUT', '/api/v1/settings', { massMailing: { dedicatedServer: true, serverId: personalId } });
      assert.equal(mass.status, 400, mass.text);
      assert.match(mass.error.message!, /personal server/);

      const own = await send('alice', { from: '"Alice" <alice@example.com>' });
      const others = [
        await send('bob', { from: 'bob@example.com' }),
        await send('admin', { from: 'alice@example.com' }),
        await send('admin', { from: 'notifications@example.com' }),
        await send('admin', { from: 'alice@example.com', massMailing: true }),
        await send('admin', { from: 'carol@other.test' }),
      ];
      // An admin forcing a mail through her server is refused at routing, not sent.
      const forced = await send('admin', { from: 'alice@example.com', serverId: personalId });
      // Bob cannot even name it.
      assert.equal((await api('bob', 'POST', '/api/v1/mails', { from: 'bob@example.com', to: ['x@client.test'], subject: 's', text: 't', serverId: personalId })).status, 404);

      // An admin lists alice's domain on her server (admins may): bob's mail of that domain still avoids it.
      const widened = await api('admin', 'PATCH', `/api/v1/outgoing-servers/${personalId}`, { fromFilter: 'example.com' });
      assert.equal(widened.status, 200, widened.text);
      others.push(await send('bob', { from: 'bob@example.com' }));
      await d.drain();

      // The route explanation says why the personal server was not used.
      const route = await api('admin', 'GET', `/api/v1/route?from=${encodeURIComponent('bob@example.com')}`);
      assert.equal(route.body.serverId, sharedId, route.text);
      assert.match((route.body.explanation as string[]).join('\n'), /personal server, not used: a personal server carries only its owner's own mail .*sent by user id \d+/);

      // Priority games: a shared server listing alice's own address wins although hers has priority 0.
      const sharedForAlice = await api('admin', 'POST', '/api/v1/outgoing-servers', {
        name: 'shared for alice', host: '127.0.0.1', port: sharedSink.port, security: 'none', auth: 'password', username: 'shared', password: passwords.shared, fromFilter: 'alice@example.com', priority: 10_000,
      });
      assert.equal(sharedForAlice.status, 201, sharedForAlice.text);
      others.push(await send('alice', { from: 'alice@example.com' }));
      await d.drain();

      assert.equal((await mail(own)).state, 'sent');
      for (const id of others) assert.equal((await mail(id)).state, 'sent', JSON.stringify(await mail(id)));
      const f = await mail(forced);
      assert.equal(f.state, 'failed');
      assert.equal(f.failureType, 'forced_server_unavailable', JSON.stringify(f));

      const toAlice = aliceSink.messages.slice(aliceBefore);
      assert.equal(toAlice.length, 1, 'her sink got exactly her own mail');
      assert.equal(toAlice[0]!.from, 'alice@example.com');
      assert.match((await headersOf(toAlice[0]!.raw)).from, /alice@example\.com/);
      assert.equal(sharedSink.messages.length - sharedBefore, others.length, 'every other mail went through a shared server');
      assert.ok(sharedSink.messages.slice(sharedBefore).every((m) => m.user === 'shared'));

      await api('admin', 'DELETE', `/api/v1/outgoing-servers/${sharedForAlice.body.id as number}`);
      await api('alice', 'DELETE', `/api/v1/outgoing-servers/${personalId}`);
      await setAllowList(null);
    });
  });
}
