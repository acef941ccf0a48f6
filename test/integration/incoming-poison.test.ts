// Poison input, on both databases, against a real Dovecot: 1,000 mutants of valid messages plus hand-made
// hostile ones are fetched over IMAP by Juniper's fetcher. Each is stored or quarantined (none lost, none
// twice), \Seen is set only on stored UIDs, a message over the size cap is quarantined from its headers alone,
// and the mailbox keeps flowing. Then messages the database itself refuses (a test trigger): quarantined with
// the bytes, minimally without them, or - when nothing can be written - the run stops before the message.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { imapConnector } from '../../src/incoming/imap-reader.js';
import type { ConnectReader } from '../../src/incoming/mailbox-reader.js';
import { isAppError } from '../../src/lib/errors.js';
import { messageIdKey, rawKey } from '../../src/mailbox/dedupe.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { corpusMessage, deliverAll, incomingApi, seenByUid, type Json, imapPeersForFile } from '../helpers/incoming.js';
import { deliverToMaildir, handMade, mutants, seeds } from '../helpers/incoming-poison.js';
import { projectRoot } from '../helpers/project-root.js';

const PASSWORD = 'imap-secret';
const MUTANTS = 1000;
const CAP = 3 * 1024 * 1024;
const users = ['poison', 'refused'].flatMap((u) => dialects.map((d) => `${u}-${d}@example.test`));
const dsn = fs.readFileSync(path.join(projectRoot, 'test/fixtures/incoming/postfix-dsn.eml'));

const peers = imapPeersForFile(users, PASSWORD);

for (const dialect of dialects) {
  describe(`poison input fetched from Dovecot (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let key: string;
    const mailbox = (name: string) => `${name}-${dialect}@example.test`;
    const { api, confirmed, fetchNow } = incomingApi(() => ({ http, key }), () => peers.dovecot, PASSWORD);

    /** Every row of the server, paged through the API (quarantined ones included, as users see them). */
    const allListed = async (id: number, query = '') => {
      const rows: Json[] = [];
      for (let after = 0; ; ) {
        const page = (await api('GET', `/api/v1/messages?serverId=${id}&limit=1000&after=${after}${query}`)).body as unknown as Json[];
        rows.push(...page);
        if (page.length < 1000) return rows;
        after = page.at(-1)!.id as number;
      }
    };
    const rowsByUid = async (id: number) => {
      const rows = await t.app.database.db.selectFrom('messages').select(['id', 'uid', 'quarantined', 'parse_error', 'raw_sha256', 'size', 'message_id', 'text_body', 'dedupe_key']).where('server_id', '=', id).execute();
      const byUid = new Map<number, (typeof rows)[number][]>();
      for (const r of rows) byUid.set(Number(r.uid), [...(byUid.get(Number(r.uid)) ?? []), r]);
      return byUid;
    };

    /** The real IMAP reader, watched: which UIDs were downloaded whole, and whether any was marked \\Seen before it was stored. */
    const watched = (id: number) => {
      const seenBeforeStored: number[] = [];
      const downloaded = new Set<number>();
      const headersOnly = new Set<number>();
      const connect: ConnectReader = async (...args) => {
        const reader = await imapConnector()(...args);
        return {
          open: (f) => reader.open(f),
          listAfter: (u, exactAbove) => reader.listAfter(u, exactAbove),
          firstUnseen: () => reader.firstUnseen(),
          close: () => reader.close(),
          fetch: (uids) => {
            for (const u of uids) downloaded.add(u);
            return reader.fetch(uids);
          },
          fetchHeaders: (uids, max) => {
            for (const u of uids) headersOnly.add(u);
            return reader.fetchHeaders(uids, max);
          },
          async markSeen(uids) {
            const stored = new Set((await t.app.database.db.selectFrom('messages').select('uid').where('server_id', '=', id).where('uid', 'in', uids).execute()).map((r) => Number(r.uid)));
            seenBeforeStored.push(...uids.filter((u) => !stored.has(u)));
            return reader.markSeen(uids);
          },
        };
      };
      return { connect, seenBeforeStored, downloaded, headersOnly };
    };

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      key = (await t.createUser('admin', 'admin')).apiKey;
      assert.equal((await api('PUT', '/api/v1/parameters/mail.incoming.max_message_bytes', { value: String(CAP) })).status, 200);
    });
    after(async () => t.close());

    it(`stores or quarantines each of ${MUTANTS} mutants and the hand-made hostile messages, none lost or twice, and the mailbox keeps flowing`, async () => {
      const user = mailbox('poison');
      const id = await confirmed(user);
      const hostile = handMade(user, dialect, CAP);
      const corpus = [...mutants(MUTANTS, seeds(user, dsn), 20261202, dialect), ...hostile.map((h) => h.raw)];
      const named = new Map(hostile.map((h) => [h.name, h.raw]));
      deliverToMaildir(peers.dovecot, user, corpus);
      const uids = [...(await seenByUid(peers.dovecot, user, PASSWORD)).keys()];
      assert.equal(uids.length, corpus.length, 'Dovecot took every message');

      const server = await t.app.services.incomingServers.get(id);
      const watch = watched(id);
      const counts = await t.app.services.incoming.fetchNow(server, {}, { connect: watch.connect });
      assert.equal(counts.fetched, corpus.length);
      assert.equal(counts.duplicates, 0, 'every corpus message is its own message');
      assert.equal(counts.stored + counts.quarantined, corpus.length);
      assert.ok(counts.quarantined >= 6 && counts.stored >= 900, `both outcomes occur (${JSON.stringify(counts)})`);

      const byUid = await rowsByUid(id);
      for (const uid of uids) assert.equal(byUid.get(uid)?.length, 1, `UID ${uid} has exactly one row`);
      assert.equal(byUid.size, uids.length, 'and no row names a UID the mailbox does not have');
      const seen = await seenByUid(peers.dovecot, user, PASSWORD);
      assert.deepEqual([...seen].filter(([, s]) => !s), [], 'every message is \\Seen');
      assert.deepEqual(watch.seenBeforeStored, [], '\\Seen was set only on UIDs already stored');

      // The quarantine is what the API lists.
      const quarantined = await allListed(id, '&quarantined=true');
      assert.equal(quarantined.length, counts.quarantined);
      assert.equal((await allListed(id)).length, corpus.length);

      // Over the cap: quarantined from the header section, the body never downloaded.
      const oversize = [...byUid.entries()].find(([, [r]]) => r!.parse_error?.includes('over the incoming size cap'));
      assert.ok(oversize, 'the oversize message is quarantined as such');
      const [oversizeUid, [oversizeRow]] = oversize;
      assert.match(oversizeRow!.parse_error!, new RegExp(`is ${named.get('oversize')!.length} bytes .* over the incoming size cap of ${CAP} bytes .*mail\\.incoming\\.max_message_bytes`));
      assert.equal(oversizeRow!.size, named.get('oversize')!.length, 'its real size is recorded');
      assert.ok(watch.headersOnly.has(oversizeUid) && !watch.downloaded.has(oversizeUid), 'only its headers were fetched');
      const oversizeRaw = await api('GET', `/api/v1/messages/${oversizeRow!.id}/raw`);
      assert.ok(oversizeRaw.raw.length < 2048 && oversizeRaw.raw.toString().includes('Subject: oversize'), 'the header section is kept');
      assert.equal(watch.headersOnly.size, 1, 'nothing else was over the cap');

      // A Message-ID far over a btree key is stored normally and findable; what mailparser refuses is quarantined whole.
      const rows = [...byUid.values()].flat();
      // Each key made once, not once per row: hashing a 2 MB message for each of 1,000 rows was most of this file's CPU.
      const withKey = (key: string) => (r: (typeof rows)[number]) => r.dedupe_key === key;
      const longId = /^Message-ID: (<[^>]+>)/.exec(named.get('message-id-100kb')!.toString())![1]!;
      assert.deepEqual(rows.filter(withKey(messageIdKey(longId))).map((r) => [r.quarantined, r.message_id]), [[0, longId]], 'the 100 KB Message-ID is stored normally');
      for (const name of ['message-id-2mb', 'parts-1001', 'header-1mb', 'header-line-1mb', 'no-header-section']) {
        assert.deepEqual(rows.filter(withKey(rawKey(named.get(name)!))).map((r) => r.quarantined), [1], `${name} is quarantined with its bytes`);
      }
      for (const name of ['parts-999', 'nested-rfc822-6', 'references-20000', 'invalid-utf8', 'bad-base64', '8bit-headers', 'line-1mb']) {
        const messageId = /^Message-ID: (<[^>]+>)/.exec(named.get(name)!.toString('latin1'))![1]!;
        assert.deepEqual(rows.filter(withKey(messageIdKey(messageId))).map((r) => r.quarantined), [0], `${name} is stored`);
      }

      // Juniper is up and the mailbox flows: a normal message after the corpus is stored normally.
      assert.equal((await http.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
      const normal = corpusMessage('plain', user, 1);
      await deliverAll(peers.dovecot, user, [normal.raw]);
      assert.deepEqual(await fetchNow(id), { fetched: 1, stored: 1, duplicates: 0, quarantined: 0 });
      assert.equal((await allListed(id, '&quarantined=false')).filter((m) => m.messageId === normal.messageId).length, 1);
      assert.deepEqual(await fetchNow(id), { fetched: 0, stored: 0, duplicates: 0, quarantined: 0 }, 'a second fetch finds nothing new');

      // Fetched all over again (as after a cursor reset): every message, stored or quarantined, is recognised.
      await t.app.database.db.updateTable('incoming_servers').set({ cursor_last_uid: 0, cursor_seen_uid: 0 }).where('id', '=', id).execute();
      assert.deepEqual(await fetchNow(id), { fetched: corpus.length + 1, stored: 0, duplicates: corpus.length + 1, quarantined: 0 }, 'nothing is stored twice');
      assert.equal((await allListed(id)).length, corpus.length + 1);
    });

    it('a message the database refuses is quarantined with its bytes, else minimally; when nothing can be written the run stops before it', async () => {
      const user = mailbox('refused');
      const id = await confirmed(user);
      const db = t.app.database.db;
      // A real refusal by the database, for chosen subjects: the normal insert, the quarantine with the bytes, and the minimal row.
      if (dialect === 'postgres') {
        await sql`CREATE FUNCTION poison_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
          IF NEW.quarantined = 0 AND (NEW.subject LIKE 'store-%' OR NEW.subject = 'everything-fails') THEN RAISE EXCEPTION 'refused by the test trigger'; END IF;
          IF NEW.quarantined = 1 AND NEW.raw_sha256 IS NOT NULL AND NEW.subject IN ('store-and-quarantine-fail', 'everything-fails') THEN RAISE EXCEPTION 'quarantine refused by the test trigger'; END IF;
          IF NEW.quarantined = 1 AND NEW.text_body LIKE '%Subject: everything-fails%' THEN RAISE EXCEPTION 'minimal row refused by the test trigger'; END IF;
          RETURN NEW; END $$`.execute(db);
        await sql`CREATE TRIGGER poison_refuse BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION poison_refuse()`.execute(db);
      } else {
        await sql`CREATE TRIGGER poison_refuse_store BEFORE INSERT ON messages WHEN NEW.quarantined = 0 AND (NEW.subject LIKE 'store-%' OR NEW.subject = 'everything-fails') BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END`.execute(db);
        await sql`CREATE TRIGGER poison_refuse_quarantine BEFORE INSERT ON messages WHEN NEW.quarantined = 1 AND NEW.raw_sha256 IS NOT NULL AND NEW.subject IN ('store-and-quarantine-fail', 'everything-fails') BEGIN SELECT RAISE(ABORT, 'quarantine refused by the test trigger'); END`.execute(db);
        await sql`CREATE TRIGGER poison_refuse_minimal BEFORE INSERT ON messages WHEN NEW.quarantined = 1 AND NEW.text_body LIKE '%Subject: everything-fails%' BEGIN SELECT RAISE(ABORT, 'minimal row refused by the test trigger'); END`.execute(db);
      }
      const withSubject = (subject: string, n: number) => {
        const m = corpusMessage('plain', user, n);
        return Buffer.from(m.raw.toString('latin1').replace(/^Subject: .*$/m, `Subject: ${subject}`), 'latin1');
      };
      await deliverAll(peers.dovecot, user, [withSubject('fine-1', 1), withSubject('store-fails', 2), withSubject('store-and-quarantine-fail', 3), withSubject('fine-2', 4)], 1);
      assert.deepEqual(await fetchNow(id), { fetched: 4, stored: 2, duplicates: 0, quarantined: 2 });
      const byUid = await rowsByUid(id);
      const [storeFailed] = byUid.get(2)!;
      assert.equal(storeFailed!.quarantined, 1);
      assert.match(storeFailed!.parse_error!, /could not store this message: .*refused by the test trigger/);
      assert.ok(storeFailed!.raw_sha256, 'the original bytes are kept');
      const [minimal] = byUid.get(3)!;
      assert.equal(minimal!.quarantined, 1);
      assert.equal(minimal!.raw_sha256, null);
      assert.match(minimal!.parse_error!, /Quarantine with the original failed too \(.*quarantine refused by the test trigger\)/);
      assert.match(minimal!.text_body!, /Subject: store-and-quarantine-fail/);
      assert.ok([...(await seenByUid(peers.dovecot, user, PASSWORD)).values()].every(Boolean));
      const listed = (await api('GET', `/api/v1/messages?serverId=${id}&quarantined=true`)).body as unknown as Json[];
      assert.deepEqual(listed.map((m) => m.id), [storeFailed!.id, minimal!.id]);

      // Nothing can be written for UID 5: the run stops before it, recorded on the server; UID 6 waits behind it.
      await deliverAll(peers.dovecot, user, [withSubject('everything-fails', 5), withSubject('fine-3', 6)], 1);
      const server = await t.app.services.incomingServers.get(id);
      await assert.rejects(t.app.services.incoming.fetchNow(server), (err: unknown) => isAppError(err) && err.code === 'JUNIPER_ERR_DATABASE' && /UID 5 .* could be neither stored nor quarantined .*next fetch tries this message again/.test(err.message));
      const failed = (await api('GET', `/api/v1/incoming-servers/${id}`)).body;
      assert.match(String(failed.lastError), new RegExp(`^Fetching "${user}" failed: Message UID 5 of incoming server "${user}" could be neither stored nor quarantined`));
      const seen = await seenByUid(peers.dovecot, user, PASSWORD);
      assert.deepEqual([seen.get(5), seen.get(6)], [false, false], 'neither is marked');
      assert.equal((await rowsByUid(id)).has(5), false);
      assert.equal((await t.app.services.incomingServers.get(id)).cursor_last_uid, 4, 'the cursor stays before it');

      if (dialect === 'postgres') await sql`DROP TRIGGER poison_refuse ON messages`.execute(db);
      else for (const name of ['poison_refuse_store', 'poison_refuse_quarantine', 'poison_refuse_minimal']) await sql`DROP TRIGGER ${sql.ref(name)}`.execute(db);
      assert.deepEqual(await fetchNow(id), { fetched: 2, stored: 2, duplicates: 0, quarantined: 0 }, 'once the database takes it, the next run stores both');
      assert.ok([...(await seenByUid(peers.dovecot, user, PASSWORD)).values()].every(Boolean));
      assert.equal((await api('GET', `/api/v1/incoming-servers/${id}`)).body.lastError, null);
    });
  });
}
