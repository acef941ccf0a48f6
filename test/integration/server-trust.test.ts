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
import { cliEnv, runJuniper } from '../helpers/cli.js';
import { dialects } from '../helpers/databases.js';
import { headersOf, testDispatcher, type TestDispatcher } from '../helpers/outgoing.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

const PUBLIC = '93.184.216.34';
const ALLOW = 'mail.server.allowed_private_hosts';
const PORTS = 'mail.server.allowed_ports';
const MAIL_PORTS = '25, 143, 465, 587, 993, 2525';

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

/** A relay on loopback that counts connections and passes each on to `target` (an SMTP sink). */
async function startCountingRelay(target: number): Promise<{ port: number; connections: () => number; stop: () => Promise<void> }> {
  let count = 0;
  const open = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    count++;
    const upstream = net.connect(target, '127.0.0.1');
    for (const s of [socket, upstream]) {
      open.add(s);
      s.on('error', () => undefined).on('close', () => {
        open.delete(s);
        socket.destroy();
        upstream.destroy();
      });
    }
    socket.pipe(upstream).pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => count,
    stop: () =>
      new Promise((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
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
    const setPorts = async (value: string | null) => {
      const r = value === null ? await api('admin', 'DELETE', `/api/v1/parameters/${PORTS}`) : await api('admin', 'PUT', `/api/v1/parameters/${PORTS}`, { value });
      assert.ok(r.status === 200 || r.status === 204 || (value === null && r.status === 404), r.text);
    };
    // The peers listen on ports the system picked: the admin allows exactly those besides the mail ports, as an
    // admin would a relay's own port (the port tests below change it and put it back).
    const peerPorts = () => `${MAIL_PORTS}, ${tripwire.port}, ${aliceSink.port}`;
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
      await setPorts(peerPorts());
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

    it("refuses a user's server on a port off the list at create, update, Test Connection and Test & Confirm, before any connection and alike whatever the host; the admin's list admits it, an admin's own server is free", async () => {
      await setPorts(null);
      const before = tripwire.connections();
      for (const kind of ['outgoing', 'incoming'] as const) {
        const messages = new Set<string>();
        // Public, loopback, private, typed in or by name, and a name that does not exist: one answer.
        for (const host of ['public.juniper.test', PUBLIC, '127.0.0.1', 'loopback.juniper.test', '10.0.0.1', 'nowhere.juniper.test']) {
          const r = await api('alice', 'POST', `/api/v1/${kind}-servers`, kind === 'outgoing' ? outgoing(host, tripwire.port) : incoming(host, tripwire.port));
          assert.equal(r.status, 400, `${kind} ${host}: ${r.text}`);
          assert.equal(r.error.code, 'JUNIPER_ERR_PORT_NOT_ALLOWED', r.text);
          assert.equal((r.error as { field?: string }).field, 'port', r.text);
          messages.add(r.error.message!);
        }
        assert.equal(messages.size, 1, `the same message whatever the host: ${[...messages].join(' | ')}`);
        assert.match(
          [...messages][0]!,
          new RegExp(`^The ${kind} mail server uses port ${tripwire.port}, which .* \\(allowed: ${MAIL_PORTS}\\)\\. Use ${kind === 'incoming' ? '993 \\(IMAP over TLS\\) or 143 \\(IMAP\\)' : '587 \\(SMTP submission\\) or 465 \\(SMTP over TLS\\)'}, or ask an admin to add port ${tripwire.port} to the system parameter mail\\.server\\.allowed_ports\\.$`),
        );
        // Saved on a mail port, it cannot be moved off the list.
        const saved = await api('alice', 'POST', `/api/v1/${kind}-servers`, kind === 'outgoing' ? outgoing('public.juniper.test', 587) : incoming('public.juniper.test', 993));
        assert.equal(saved.status, 201, saved.text);
        const moved = await api('alice', 'PATCH', `/api/v1/${kind}-servers/${saved.body.id as number}`, { port: tripwire.port });
        assert.equal(moved.status, 400, moved.text);
        assert.equal(moved.error.code, 'JUNIPER_ERR_PORT_NOT_ALLOWED', moved.text);
        assert.equal((moved.error as { field?: string }).field, 'port');
        await api('alice', 'DELETE', `/api/v1/${kind}-servers/${saved.body.id as number}`);
      }
      // An admin making the server for alice is held to alice's list: the owner decides, not who typed it.
      const forAlice = await api('admin', 'POST', '/api/v1/outgoing-servers', { ...outgoing('public.juniper.test', tripwire.port), ownerUserId: ids.alice });
      assert.equal(forAlice.error.code, 'JUNIPER_ERR_PORT_NOT_ALLOWED', forAlice.text);
      assert.equal(tripwire.connections(), before, 'nothing was connected to');

      // An admin's own server may use any port, and is connected to.
      const admins = await api('admin', 'POST', '/api/v1/outgoing-servers', { ...outgoing('127.0.0.1', tripwire.port), ownerUserId: ids.admin });
      assert.equal(admins.status, 201, admins.text);
      assert.equal((await api('admin', 'POST', `/api/v1/outgoing-servers/${admins.body.id as number}/test`)).body.ok, false, 'the tripwire says nothing');
      assert.equal(tripwire.connections(), before + 1, "the admin's server reached the port");
      await api('admin', 'DELETE', `/api/v1/outgoing-servers/${admins.body.id as number}`);

      // Once an admin adds the port (and, for loopback, the host), alice's servers are saved and connect there.
      await setPorts(`${MAIL_PORTS}, ${tripwire.port}`);
      await setAllowList('127.0.0.1');
      for (const kind of ['outgoing', 'incoming'] as const) {
        const r = await api('alice', 'POST', `/api/v1/${kind}-servers`, kind === 'outgoing' ? outgoing('127.0.0.1', tripwire.port) : incoming('127.0.0.1', tripwire.port));
        assert.equal(r.status, 201, r.text);
        const test = await api('alice', 'POST', `/api/v1/${kind}-servers/${r.body.id as number}/test`);
        assert.equal(test.body.ok, false, test.text);
        await api('alice', 'DELETE', `/api/v1/${kind}-servers/${r.body.id as number}`);
      }
      assert.equal(tripwire.connections(), before + 3, 'Test Connection and Test & Confirm reached the port once it was allowed');
      await setAllowList(null);
      await setPorts(peerPorts());
    });

    it('refuses at use a server saved before an admin narrowed the list (test, send, fetch), connecting nowhere; the mail waits and is sent as soon as the port, or the host, is allowed again', async () => {
      const relay = await startCountingRelay(aliceSink.port);
      try {
        await setAllowList('127.0.0.1');
        await setPorts(`${MAIL_PORTS}, ${relay.port}, ${tripwire.port}`);
        const out = await api('alice', 'POST', '/api/v1/outgoing-servers', outgoing('sink.juniper.test', relay.port, { name: 'alice relay', priority: 0 }));
        assert.equal(out.status, 201, out.text);
        const outId = out.body.id as number;
        const inc = await api('alice', 'POST', '/api/v1/incoming-servers', { ...incoming('loopback.juniper.test', tripwire.port), name: 'alice inbox' });
        assert.equal(inc.status, 201, inc.text);
        const incId = inc.body.id as number;
        // As if confirmed while the port was allowed.
        await t.app.database.db.updateTable('incoming_servers').set({ state: 'confirmed' }).where('id', '=', incId).execute();

        // The admin narrows the list back to the mail ports.
        await setPorts(null);
        const [relayBefore, tripwireBefore, sunk] = [relay.connections(), tripwire.connections(), aliceSink.messages.length];
        const test = await api('alice', 'POST', `/api/v1/outgoing-servers/${outId}/test`);
        assert.equal(test.body.ok, false, test.text);
        assert.equal(test.body.stage, 'connect');
        assert.match(test.body.message as string, new RegExp(`^The outgoing mail server "alice relay" \\(id ${outId}\\) uses port ${relay.port}, .*ask an admin to add port ${relay.port} to the system parameter mail\\.server\\.allowed_ports\\.$`));
        assert.doesNotMatch(test.body.message as string, /sink\.juniper\.test|127\.0\.0\.1/, 'the host is not part of the answer');

        const id = await send('alice', { from: 'alice@example.com' });
        assert.equal(await d.drain(), 1);
        const waiting = await mail(id);
        // Not failed: retrying cannot help, an admin's decision or a changed server can, so the mail waits for it.
        assert.equal(waiting.state, 'queued', JSON.stringify(waiting));
        assert.equal(waiting.failureType, 'port_not_allowed', JSON.stringify(waiting));
        assert.match(String(waiting.waitingReason), new RegExp(`"alice relay" \\(id ${outId}\\) uses port ${relay.port}.*mail\\.server\\.allowed_ports.*Mails wait until an admin allows the port or the server is changed\\.`));

        const confirm = await api('alice', 'POST', `/api/v1/incoming-servers/${incId}/test`);
        assert.equal(confirm.body.ok, false, confirm.text);
        assert.equal(confirm.body.stage, 'connect');
        assert.equal(confirm.body.serverReply, undefined);
        assert.match(confirm.body.message as string, new RegExp(`^The incoming mail server "alice inbox" \\(id ${incId}\\) uses port ${tripwire.port}, `));
        const fetch = await api('alice', 'POST', `/api/v1/incoming-servers/${incId}/fetch?wait=true`);
        assert.equal(fetch.error.code, 'JUNIPER_ERR_PORT_NOT_ALLOWED', fetch.text);
        const server = (await api('alice', 'GET', `/api/v1/incoming-servers/${incId}`)).body;
        assert.equal(server.state, 'confirmed', 'still fetched at its next interval');
        assert.match(String(server.lastError), /uses port \d+, .*mail\.server\.allowed_ports/);
        assert.deepEqual([relay.connections(), tripwire.connections(), aliceSink.messages.length], [relayBefore, tripwireBefore, sunk], 'neither test, send nor fetch connected');

        // The admin allows the port again (the parameters API): the waiting mail is due at once, not at its next
        // recheck minutes later, and goes through the relay.
        await setPorts(`${MAIL_PORTS}, ${relay.port}`);
        assert.equal(await d.drain(), 1);
        assert.equal((await mail(id)).state, 'sent');
        assert.equal(aliceSink.messages.length, sunk + 1);
        assert.ok(relay.connections() > relayBefore, 'sent through the allowed port');

        // Likewise the address policy, changed by `juniper params` in another process: a mail refused for its
        // server's loopback host waits, and goes as soon as the admin allows the host.
        await setAllowList(null);
        const held = await send('alice', { from: 'alice@example.com' });
        assert.equal(await d.drain(), 1);
        assert.equal((await mail(held)).failureType, 'host_not_allowed', JSON.stringify(await mail(held)));
        const db = t.config.database;
        const allowed = runJuniper(cliEnv(t.config.dataDir, db.kind === 'postgres' ? db.url : `sqlite:${db.file}`), ['params', 'set', ALLOW, '127.0.0.1']);
        assert.equal(allowed.code, 0, allowed.stderr);
        assert.equal(await d.drain(), 1);
        assert.equal((await mail(held)).state, 'sent');
        assert.equal(aliceSink.messages.length, sunk + 2);

        await api('alice', 'DELETE', `/api/v1/outgoing-servers/${outId}`);
        await api('alice', 'DELETE', `/api/v1/incoming-servers/${incId}`);
      } finally {
        await setAllowList(null);
        await setPorts(peerPorts());
        await relay.stop();
      }
    });
  });
}
