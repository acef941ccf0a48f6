// Incoming mail end to end on both databases, against a real Dovecot on loopback with password logins:
// servers through the API, Test & Confirm, fetches of mail delivered over LMTP, what a second IMAP client
// (a person in Outlook) sees of the \Seen flags, quarantine and UIDVALIDITY. Crashes: incoming-crash.test.ts.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { corpus, corpusMessage, deliverAll, malformedMessage, seenByUid, withMailbox, incomingApi, type Json, imapPeersForFile } from '../helpers/incoming.js';

const PASSWORD = 'imap-secret';
const users = ['confirm', 'bulk', 'seen', 'quarantine', 'uidvalidity', 'moved'].flatMap((u) => dialects.map((d) => `${u}-${d}@example.test`));

const peers = imapPeersForFile(users, PASSWORD);

for (const dialect of dialects) {
  describe(`incoming mail from Dovecot with password logins (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let key: string;
    const mailbox = (name: string) => `${name}-${dialect}@example.test`;

    const { api, createServer, confirmed, fetchNow, listed } = incomingApi(() => ({ http, key }), () => peers.dovecot, PASSWORD);

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      key = (await t.createUser('admin', 'admin')).apiKey;
    });
    after(async () => t.close());

    it('Test & Confirm names the failing step with the server reply, then confirms a working server', async () => {
      const user = mailbox('confirm');
      const id = await createServer(user, { password: 'wrong-password' });
      const wrongPassword = await api('POST', `/api/v1/incoming-servers/${id}/test`);
      assert.equal(wrongPassword.body.ok, false);
      assert.equal(wrongPassword.body.stage, 'auth');
      assert.match(String(wrongPassword.body.message), /Authentication refused for confirm-.*AUTHENTICATIONFAILED.*Check the username/);
      assert.equal(wrongPassword.body.state, 'draft');

      assert.equal((await api('PATCH', `/api/v1/incoming-servers/${id}`, { password: PASSWORD, folder: 'Orders' })).status, 200);
      const noFolder = await api('POST', `/api/v1/incoming-servers/${id}/test`);
      assert.equal(noFolder.body.stage, 'folder', noFolder.text);
      assert.match(String(noFolder.body.message), /The folder "Orders" could not be opened: "NO Mailbox doesn't exist/);

      const wrongTls = await createServer(user, { port: peers.dovecot.imapPort, security: 'ssl' });
      const tls = await api('POST', `/api/v1/incoming-servers/${wrongTls}/test`);
      assert.equal(tls.body.stage, 'tls', tls.text);
      assert.match(String(tls.body.message), /STARTTLS/);

      assert.equal((await api('POST', `/api/v1/incoming-servers/${id}/fetch`)).status, 409, 'a draft is not fetched');
      assert.equal((await api('PATCH', `/api/v1/incoming-servers/${id}`, { folder: 'INBOX' })).status, 200);
      const ok = await api('POST', `/api/v1/incoming-servers/${id}/test`);
      assert.equal(ok.body.ok, true, ok.text);
      assert.match(String(ok.body.message), /logged in as confirm-.*opened the folder "INBOX" \(0 messages\)/);
      const view = (await api('GET', `/api/v1/incoming-servers/${id}`)).body;
      assert.equal(view.state, 'confirmed');
      assert.equal(view.hasPassword, true);
      assert.ok(!JSON.stringify(view).includes(PASSWORD), 'the password never leaves the vault');
      assert.ok(!t.logs().includes(PASSWORD), 'nor reaches the logs');

      // A new endpoint takes the password again (a stored one goes only where it was entered for).
      assert.equal((await api('PATCH', `/api/v1/incoming-servers/${id}`, { port: peers.dovecot.imapPort, security: 'starttls', password: PASSWORD })).body.state, 'draft', 'a connection change needs a new Test & Confirm');
      assert.equal((await api('POST', `/api/v1/incoming-servers/${id}/test`)).body.ok, true, 'STARTTLS works too');
    });

    it("sends a stored password only where it was entered for: the owner's move to another port, host or security is refused and nothing connects there; a new password moves with it", async () => {
      // A listener standing for a host of the owner's own: it counts connections and says nothing.
      let connections = 0;
      const trap = net.createServer((socket) => {
        connections++;
        socket.destroy();
      });
      await new Promise<void>((resolve) => trap.listen(0, '127.0.0.1', resolve));
      const trapPort = (trap.address() as net.AddressInfo).port;
      try {
        assert.equal((await api('PUT', '/api/v1/parameters/mail.server.allowed_private_hosts', { value: '127.0.0.1' })).status, 200);
        // The peers listen on ports the system picked: the admin allows those, as an admin would a relay's own port.
        const ports = `993, ${peers.dovecot.imapsPort}, ${peers.dovecot.imapPort}, ${trapPort}`;
        assert.equal((await api('PUT', '/api/v1/parameters/mail.server.allowed_ports', { value: ports })).status, 200);
        const owner = await t.createUser(`imap-owner-${dialect}`, 'user');
        const asOwner = async (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: object) => {
          const res = await http.inject({ method, url, payload, headers: { authorization: `Bearer ${owner.apiKey}` } });
          return { status: res.statusCode, body: res.json<Json>(), text: res.body };
        };
        // The admin typed the password in; the owner sees hasPassword: true.
        const id = await createServer(mailbox('moved'), { ownerUserId: owner.id });
        const url = `/api/v1/incoming-servers/${id}`;
        assert.equal((await asOwner('GET', url)).body.hasPassword, true);
        for (const move of [{ port: trapPort, security: 'none' }, { host: 'localhost' }, { port: trapPort }]) {
          const refused = await asOwner('PATCH', url, move);
          assert.equal(refused.status, 400, `${JSON.stringify(move)}: ${refused.text}`);
          const error = refused.body.error as { code: string; message: string };
          assert.equal(error.code, 'JUNIPER_ERR_VALIDATION');
          assert.match(error.message, /^Enter the password again to change the (port and security|host|port): a stored password is only sent to the host, port and security it was entered for\.$/);
        }
        assert.equal((await asOwner('PATCH', url, { allowSelfSigned: false })).status, 200, 'certificate checks on: nothing moves');
        assert.equal((await asOwner('PATCH', url, { allowSelfSigned: true })).status, 400, 'certificate checks off again takes the password');
        assert.equal((await asOwner('PATCH', url, { allowSelfSigned: true, password: PASSWORD })).status, 200);
        const test = await asOwner('POST', `${url}/test`);
        assert.equal(test.body.ok, true, test.text);
        assert.equal(test.body.state, 'confirmed');
        assert.equal(connections, 0, 'nothing connected to the new port');

        // Unchanged endpoint: saved as before, still confirmed.
        const renamed = await asOwner('PATCH', url, { name: 'moved mailbox', port: peers.dovecot.imapsPort, security: 'ssl' });
        assert.equal(renamed.status, 200, renamed.text);
        assert.equal(renamed.body.state, 'confirmed');
        // With the password given again, the move is the owner's to make (here to Dovecot's STARTTLS port).
        const moved = await asOwner('PATCH', url, { port: peers.dovecot.imapPort, security: 'starttls', password: PASSWORD });
        assert.equal(moved.status, 200, moved.text);
        assert.equal(moved.body.state, 'draft');
        assert.equal((await asOwner('POST', `${url}/test`)).body.ok, true);
      } finally {
        await new Promise<void>((resolve) => trap.close(() => resolve()));
      }
    });

    it('fetches 200 messages of every shape, marks them \\Seen only once stored, and stores none twice', async () => {
      const user = mailbox('bulk');
      const id = await confirmed(user, { keepOriginal: true });
      const messages = corpus(200, user);
      await deliverAll(peers.dovecot, user, messages.map((m) => m.raw));

      const counts = await fetchNow(id);
      assert.deepEqual(counts, { fetched: 200, stored: 200, duplicates: 0, quarantined: 0 });
      const seen = await seenByUid(peers.dovecot, user, PASSWORD);
      assert.equal(seen.size, 200);
      assert.ok([...seen.values()].every(Boolean), 'every fetched message is \\Seen');

      const stored = await listed(`serverId=${id}`);
      assert.equal(stored.length, 200);
      const pages: Json[][] = [];
      for (let after = 0, page: Json[] = []; pages.length === 0 || page.length === 70; after = page.at(-1)!.id as number) {
        page = (await api('GET', `/api/v1/messages?serverId=${id}&limit=70&after=${after}`)).body as unknown as Json[];
        pages.push(page);
      }
      assert.deepEqual(pages.map((p) => p.length), [70, 70, 60], 'paged oldest first with limit and after');
      assert.deepEqual(pages.flat().map((m) => m.id), stored.map((m) => m.id));
      for (const kind of ['latin1', 'shift_jis', 'cp1252', 'alternative', 'attachment', 'no-message-id'] as const) {
        const sample = messages.find((m) => m.kind === kind)!;
        const row = stored.find((s) => s.subject === sample.subject);
        assert.ok(row, `${kind} stored`);
        const detail = (await api('GET', `/api/v1/messages/${row.id as number}`)).body;
        assert.ok(String(detail.text).includes(sample.expectText), `${kind}: ${JSON.stringify(detail.text)} contains ${sample.expectText}`);
        assert.equal(detail.messageId, sample.messageId ?? null);
        assert.match(String(detail.from), /Customer Smith.*customer@client\.test/);
        if (kind === 'alternative') assert.match(String(detail.html), /<b>html<\/b>/);
        if (kind === 'attachment') {
          const attachments = detail.attachments as { filename: string; url: string; size: number }[];
          assert.equal(attachments.length, 1);
          assert.match(attachments[0]!.filename, /^invoice-\d+\.pdf$/);
          const file = await api('GET', attachments[0]!.url);
          assert.equal(file.status, 200);
          assert.match(file.raw.toString(), /^%PDF-1\.4 invoice/);
        }
        const raw = await api('GET', String(detail.rawUrl));
        assert.ok(raw.raw.includes(sample.raw.subarray(0, 60)), 'the original bytes are kept');
      }

      assert.deepEqual(await fetchNow(id), { fetched: 0, stored: 0, duplicates: 0, quarantined: 0 }, 'a second fetch finds nothing new');
      // The same mail arriving again (a resent message) is recognised by its Message-ID.
      await deliverAll(peers.dovecot, user, messages.slice(0, 5).map((m) => m.raw));
      assert.deepEqual(await fetchNow(id), { fetched: 5, stored: 0, duplicates: 5, quarantined: 0 });
      assert.equal((await listed(`serverId=${id}`)).length, 200);
    });

    it('fetches mail that another client already read (the UID cursor decides, not \\Seen)', async () => {
      const user = mailbox('seen');
      const id = await confirmed(user);
      await deliverAll(peers.dovecot, user, [corpusMessage('plain', user, 1).raw]);
      assert.equal((await fetchNow(id)).stored, 1);
      const later = [2, 3, 4].map((n) => corpusMessage('plain', user, n));
      await deliverAll(peers.dovecot, user, later.map((m) => m.raw));
      await withMailbox(peers.dovecot, user, PASSWORD, 'INBOX', (client) => client.messageFlagsAdd('2:3', ['\\Seen']));
      assert.deepEqual(await fetchNow(id), { fetched: 3, stored: 3, duplicates: 0, quarantined: 0 });
      assert.ok([...(await seenByUid(peers.dovecot, user, PASSWORD)).values()].every(Boolean));
    });

    it('quarantines a message mailparser refuses, with its raw bytes and the error, and goes on with the batch', async () => {
      const user = mailbox('quarantine');
      const id = await confirmed(user);
      const bad = malformedMessage(user);
      await deliverAll(peers.dovecot, user, [corpusMessage('plain', user, 1).raw], 1);
      await deliverAll(peers.dovecot, user, [bad], 1);
      await deliverAll(peers.dovecot, user, [corpusMessage('plain', user, 2).raw], 1);
      assert.deepEqual(await fetchNow(id), { fetched: 3, stored: 2, duplicates: 0, quarantined: 1 });
      const [q] = await listed(`serverId=${id}&quarantined=true`);
      assert.ok(q);
      const detail = (await api('GET', `/api/v1/messages/${q.id as number}`)).body;
      assert.equal(detail.quarantined, true);
      assert.match(String(detail.parseError), /Max allowed child nodes exceeded/);
      const raw = await api('GET', String(detail.rawUrl));
      assert.ok(raw.raw.includes(bad.subarray(bad.indexOf('Content-Type'))), 'the quarantined bytes are the delivered ones (after the headers Dovecot adds)');
      assert.ok([...(await seenByUid(peers.dovecot, user, PASSWORD)).values()].every(Boolean), 'quarantined counts as stored');
      assert.deepEqual(await fetchNow(id), { fetched: 0, stored: 0, duplicates: 0, quarantined: 0 });
    });

    it('after a UIDVALIDITY change starts again from the oldest unseen message, like a first fetch, recognising what it already stored', async () => {
      const user = mailbox('uidvalidity');
      const first = [1, 2, 3].map((n) => corpusMessage('plain', user, n));
      await withMailbox(peers.dovecot, user, PASSWORD, 'INBOX', async (client) => {
        await client.mailboxCreate('Orders');
        for (const m of first) await client.append('Orders', m.raw);
      });
      const id = await confirmed(user, { folder: 'Orders' });
      assert.equal((await fetchNow(id)).stored, 3);
      const before = await t.app.services.incomingServers.get(id);
      await withMailbox(peers.dovecot, user, PASSWORD, 'INBOX', async (client) => {
        await client.mailboxDelete('Orders');
        await client.mailboxCreate('Orders');
        // A folder restored from a backup: old mail read, one of the old ones unread, then new mail (read or not).
        const restored: [Buffer, string[]][] = [[first[0]!.raw, ['\\Seen']], [first[1]!.raw, ['\\Seen']], [first[2]!.raw, []], [corpusMessage('plain', user, 4).raw, []], [corpusMessage('plain', user, 5).raw, ['\\Seen']]];
        for (const [raw, flags] of restored) await client.append('Orders', raw, flags);
      });
      assert.deepEqual(await fetchNow(id), { fetched: 3, stored: 2, duplicates: 1, quarantined: 0 }, 'UIDs 3-5 only: the read mail before the oldest unseen is not fetched again');
      const afterReset = await t.app.services.incomingServers.get(id);
      assert.notEqual(afterReset.cursor_uidvalidity, before.cursor_uidvalidity);
      assert.equal(afterReset.cursor_last_uid, 5);
      assert.equal((await listed(`serverId=${id}`)).length, 5);
    });
  });
}
