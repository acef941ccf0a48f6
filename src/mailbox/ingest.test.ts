// Ingest on both databases: hashed dedupe keys, Message-IDs of any length, quarantine rows, and migration 005
// moving the keys of messages stored before it without losing their dedupe.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Migrator, sql, type Kysely } from 'kysely';
import { dialects, freshDatabaseConfig } from '../../test/helpers/databases.js';
import { openDatabase, type Database } from '../db/database.js';
import { migrateToLatest } from '../db/migrate.js';
import { migrationSet } from '../db/migrations/index.js';
import type { DB } from '../db/schema.js';
import { BlobStore } from './blob-store.js';
import { messageIdKey, rawKey } from './dedupe.js';
import { Ingest, type IngestInput } from './ingest.js';
import { parseMessage } from './parse.js';

const params = { catchallDomain: null, bounceAlias: null, defaultFrom: null, catchallAlias: null };

async function addServer(db: Kysely<DB>, name: string): Promise<{ id: number; keep_original: number; keep_attachments: number; owner_user_id: null }> {
  const now = Date.now();
  const row = await db
    .insertInto('incoming_servers')
    .values({ name, host: 'imap.test', port: 993, security: 'ssl', auth: 'password', username: name, password_enc: null, owner_user_id: null, created_at: now, updated_at: now } as never)
    .returning('id')
    .executeTakeFirstOrThrow();
  return { id: row.id, keep_original: 0, keep_attachments: 1, owner_user_id: null };
}

const mail = (messageId: string | null, extra: string[] = [], body = 'Hello') =>
  Buffer.from([`From: a@client.test`, 'To: b@example.test', 'Subject: test', ...(messageId ? [`Message-ID: ${messageId}`] : []), ...extra, '', body, ''].join('\r\n'));

for (const dialect of dialects) {
  describe(`ingest on ${dialect}`, () => {
    let database: Database;
    let ingest: Ingest;
    before(async () => {
      database = openDatabase(await freshDatabaseConfig(dialect));
      await migrateToLatest(database);
      ingest = new Ingest(new BlobStore(database.db));
    });
    after(async () => database.close());

    const store = (input: Omit<IngestInput, 'params' | 'uidvalidity'>) => database.db.transaction().execute((trx) => ingest.store(trx, { ...input, uidvalidity: 1, params }));

    it('stores and threads on a Message-ID far over a btree key (100 KB parsed, 2 MB given), and dedupes it by hash', async () => {
      const server = await addServer(database.db, `long-${dialect}`);
      // Random hex: PostgreSQL compresses index entries, so a repeated character would fit a btree after all.
      const longId = `<${crypto.randomBytes(50 * 1024).toString('hex')}@client.test>`;
      const raw = mail(longId);
      const parsed = await parseMessage(raw);
      assert.ok(parsed.ok && parsed.message.messageId === longId, 'mailparser reads the 100 KB Message-ID');
      const first = await store({ server, uid: 1, raw, parsed });
      assert.equal(first.outcome, 'stored');
      const row = await database.db.selectFrom('messages').selectAll().where('id', '=', first.messageId).executeTakeFirstOrThrow();
      assert.equal(row.dedupe_key, messageIdKey(longId));
      assert.equal(row.message_id, longId, 'the Message-ID itself is kept whole');

      const reply = mail('<reply@client.test>', [`In-Reply-To: ${longId}`]);
      const threaded = await store({ server, uid: 2, raw: reply, parsed: await parseMessage(reply) });
      const replyRow = await database.db.selectFrom('messages').select('thread_id').where('id', '=', threaded.messageId).executeTakeFirstOrThrow();
      assert.equal(replyRow.thread_id, row.thread_id, 'the reply found it by its huge Message-ID');

      const resent = Buffer.concat([Buffer.from('Received: again\r\n'), raw]);
      assert.deepEqual(await store({ server, uid: 3, raw: resent, parsed: await parseMessage(resent) }), { outcome: 'duplicate', messageId: first.messageId });

      // mailparser refuses a header block of 1 MB or more; Ingest itself takes any length.
      const hugeId = `<${crypto.randomBytes(1024 * 1024).toString('hex')}@client.test>`;
      const small = await parseMessage(mail('<small@client.test>'));
      assert.ok(small.ok);
      const huge = await store({ server, uid: 4, raw: mail(null, [], 'huge'), parsed: { ok: true, message: { ...small.message, messageId: hugeId, references: [hugeId, longId] } } });
      assert.equal(huge.outcome, 'stored');
    });

    it('stores a group as one message after the other would: threads, duplicates and quarantine within the group, ids in order', async () => {
      const server = await addServer(database.db, `group-${dialect}`);
      const earlier = mail('<earlier@group.test>');
      const stored = await store({ server, uid: 1, raw: earlier, parsed: await parseMessage(earlier) });
      const pdf = Buffer.from('%PDF-1.4 group\n%%EOF\n');
      const withPdf = Buffer.concat([
        Buffer.from(['From: a@client.test', 'To: b@example.test', 'Subject: pdf', 'Message-ID: <pdf@group.test>', 'Content-Type: multipart/mixed; boundary="b"', '', '--b', 'Content-Type: text/plain', '', 'See it.', '--b', 'Content-Type: application/pdf; name="a.pdf"', 'Content-Transfer-Encoding: base64', '', pdf.toString('base64'), '--b', 'Content-Type: application/pdf; name="b.pdf"', 'Content-Transfer-Encoding: base64', '', pdf.toString('base64'), '--b--', ''].join('\r\n')),
      ]);
      const raws = [
        mail('<a@group.test>'),
        mail('<b@group.test>', ['In-Reply-To: <a@group.test>', 'Subject: Re: test']),
        mail('<a@group.test>', [], 'the same Message-ID again'),
        Buffer.from('\u0000\u0001 not mail'),
        mail('<c@group.test>', ['References: <earlier@group.test>']),
        withPdf,
        mail('<d@group.test>', ['References: <b@group.test>']),
      ];
      const inputs = await Promise.all(raws.map(async (raw, i) => ({ server, uid: 10 + i, uidvalidity: 1, raw, parsed: await parseMessage(raw), params })));
      const results = await database.db.transaction().execute((trx) => ingest.storeMany(trx, inputs));
      assert.deepEqual(results.map((r) => r.outcome), ['stored', 'stored', 'duplicate', 'quarantined', 'stored', 'stored', 'stored']);
      assert.equal(results[2]!.messageId, results[0]!.messageId, 'a duplicate within the group names the first');
      const storedIds = results.filter((r) => r.outcome === 'stored').map((r) => r.messageId);
      assert.deepEqual([...storedIds].sort((x, y) => x - y), storedIds, 'ids follow the order of the group');
      const rows = await database.db.selectFrom('messages').select(['id', 'uid', 'thread_id', 'message_id', 'quarantined']).where('server_id', '=', server.id).orderBy('id').execute();
      const byUid = new Map(rows.map((r) => [Number(r.uid), r]));
      for (const [i, r] of results.entries()) if (r.outcome !== 'duplicate') assert.equal(byUid.get(10 + i)?.id, r.messageId, `UID ${10 + i} has the id it was given`);
      const thread = (uid: number) => byUid.get(uid)!.thread_id;
      assert.equal(thread(11), thread(10), 'a reply to a message earlier in the group joins its new thread');
      assert.equal(thread(16), thread(10), 'and so does a reply to the reply');
      assert.equal(thread(14), (await database.db.selectFrom('messages').select('thread_id').where('id', '=', stored.messageId).executeTakeFirstOrThrow()).thread_id, 'a reference to a stored message joins its thread');
      assert.notEqual(thread(15), thread(10));
      assert.equal(byUid.get(13)!.quarantined, 1);
      const subjects = await database.db.selectFrom('threads').select(['id', 'subject']).where('id', 'in', [thread(10)!, thread(15)!]).execute();
      assert.deepEqual(subjects.map((t) => t.subject).sort(), ['pdf', 'test']);
      const attachments = await database.db.selectFrom('message_attachments').select(['position', 'filename', 'size', 'blob_sha256']).where('message_id', '=', results[5]!.messageId).orderBy('position').execute();
      assert.deepEqual(attachments.map((a) => [a.position, a.filename, a.size]), [[0, 'a.pdf', pdf.length], [1, 'b.pdf', pdf.length]]);
      assert.equal(attachments[0]!.blob_sha256, attachments[1]!.blob_sha256, 'the same bytes are one blob');
      assert.ok(attachments[0]!.blob_sha256);
      assert.equal((await new BlobStore(database.db).get(attachments[0]!.blob_sha256)).toString(), pdf.toString());

      const again = await database.db.transaction().execute((trx) => ingest.storeMany(trx, inputs.map((input, i) => ({ ...input, uid: 20 + i }))));
      assert.deepEqual(again.map((r) => r.outcome), Array(inputs.length).fill('duplicate'), 'the whole group again: every message a duplicate');
      assert.deepEqual(again.map((r) => r.messageId), results.map((r) => r.messageId));
    });

    it('quarantines with the bytes, or minimally with the headers as text; a second copy is a duplicate', async () => {
      const server = await addServer(database.db, `q-${dialect}`);
      const raw = mail('<q@client.test>', ['X-Bad: \u0000nul'], 'body');
      const q = await database.db.transaction().execute((trx) => ingest.quarantine(trx, { server, uid: 1, uidvalidity: 1, raw, error: 'could not store: \u0000boom' }));
      assert.equal(q.outcome, 'quarantined');
      const row = await database.db.selectFrom('messages').selectAll().where('id', '=', q.messageId).executeTakeFirstOrThrow();
      assert.equal(row.quarantined, 1);
      assert.equal(row.parse_error, 'could not store: boom');
      assert.equal(row.subject, 'test', 'the headers are read for the Inbox');
      assert.equal(row.dedupe_key, rawKey(raw));
      assert.ok(row.raw_sha256);
      const again = await database.db.transaction().execute((trx) => ingest.quarantine(trx, { server, uid: 2, uidvalidity: 1, raw, error: 'x' }));
      assert.deepEqual(again, { outcome: 'duplicate', messageId: q.messageId });
      // The same bytes fetched again (UIDVALIDITY reset) are recognised before anything is tried.
      assert.deepEqual(await store({ server, uid: 3, raw, parsed: await parseMessage(raw) }), { outcome: 'duplicate', messageId: q.messageId });

      // Headers of an oversize message whose Message-ID was stored whole before (under a higher cap): the same message.
      const whole = mail('<big@client.test>', [], 'the whole body');
      const stored = await store({ server, uid: 5, raw: whole, parsed: await parseMessage(whole) });
      const headersOnly = Buffer.from('Message-ID: <big@client.test>\r\nSubject: big\r\n\r\n');
      assert.deepEqual(await database.db.transaction().execute((trx) => ingest.quarantine(trx, { server, uid: 6, uidvalidity: 2, raw: headersOnly, size: 50_000_000, key: 'oversize:x:50000000', error: 'too big' })), { outcome: 'duplicate', messageId: stored.messageId });

      const other = mail('<m@client.test>', [`X-Long: ${'x'.repeat(100_000)}`]);
      const m = await database.db.transaction().execute((trx) => ingest.quarantineMinimal(trx, { server, uid: 4, uidvalidity: 1, raw: other, error: 'both failed' }));
      const minimal = await database.db.selectFrom('messages').selectAll().where('id', '=', m.messageId).executeTakeFirstOrThrow();
      assert.equal(minimal.quarantined, 1);
      assert.equal(minimal.raw_sha256, null);
      assert.equal(minimal.parse_error, 'both failed');
      assert.ok(minimal.text_body?.startsWith('From: a@client.test\r\n'));
      assert.equal(minimal.text_body?.length, 64 * 1024, 'headers truncated to 64 KB');
      assert.equal(minimal.size, other.length);
    });
  });

  describe(`migration 005 on ${dialect}`, () => {
    it('moves the dedupe keys of stored messages to hashes: what was stored before is still a duplicate', async () => {
      const database = openDatabase(await freshDatabaseConfig(dialect));
      try {
        const migrations = migrationSet(database.dialect);
        const migrator = new Migrator({ db: database.db, provider: { getMigrations: async () => migrations } });
        assert.equal((await migrator.migrateTo('004-incoming')).error, undefined);
        const server = await addServer(database.db, `m-${dialect}`);
        const now = Date.now();
        const old = (key: string, messageId: string | null, serverId: number | null = server.id) =>
          database.db
            .insertInto('messages')
            .values({ server_id: serverId, direction: serverId ? 'in' : 'out', dedupe_key: key, message_id: messageId, to_addrs: '[]', cc_addrs: '[]', subject: 's', size: 1, created_at: now } as never)
            .returning('id')
            .executeTakeFirstOrThrow();
        const withId = await old('<old@client.test>', '<old@client.test>');
        const noId = await old(rawKey(mail(null)), null);
        const sent = await old('<sent@example.test>', '<sent@example.test>', null);
        await migrateToLatest(database);

        const keys = new Map((await database.db.selectFrom('messages').select(['id', 'dedupe_key']).execute()).map((r) => [r.id, r.dedupe_key]));
        assert.equal(keys.get(withId.id), messageIdKey('<old@client.test>'));
        assert.equal(keys.get(noId.id), rawKey(mail(null)), 'raw-bytes keys stay');
        assert.equal(keys.get(sent.id), messageIdKey('<sent@example.test>'));
        const ingest = new Ingest(new BlobStore(database.db));
        const again = mail('<old@client.test>');
        const r = await database.db.transaction().execute(async (trx) => ingest.store(trx, { server, uid: 9, uidvalidity: 1, raw: again, parsed: await parseMessage(again), params }));
        assert.deepEqual(r, { outcome: 'duplicate', messageId: withId.id });
        // A run that died part-way (older builds ran SQLite migrations outside a transaction) must be safe to run again.
        await migrations['005-incoming-hardening']!.up(database.db as never);
        const rerun = new Map((await database.db.selectFrom('messages').select(['id', 'dedupe_key']).execute()).map((x) => [x.id, x.dedupe_key]));
        assert.equal(rerun.get(withId.id), messageIdKey('<old@client.test>'), 'an already hashed key is not hashed again');
        if (dialect === 'postgres') {
          const idx = await sql<{ indexdef: string }>`select indexdef from pg_indexes where indexname = 'messages_message_id_idx'`.execute(database.db);
          assert.match(idx.rows[0]!.indexdef, /USING hash/);
        }
      } finally {
        await database.close();
      }
    });
  });
}
