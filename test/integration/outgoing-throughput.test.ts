// Throughput features of the outgoing queue, on both databases against a real SMTP server: the
// Idempotency-Key on POST /api/v1/mails (a retry never queues twice), POST /api/v1/mails/batch (one
// transaction, one result per mail), the per-server pool size and rate limit (pacing delays mails, never
// fails them), mails sent together recorded by their lease holder only, and the blob cache of a mass mailing.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { cliEnv, runJuniper } from '../helpers/cli.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { headersOf, testDispatcher } from '../helpers/outgoing.js';
import { SLOTS_PER_CONNECTION } from '../../src/outgoing/transport-pool.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

const passwords = { 'john@example.com': 'john-pw' };

for (const dialect of dialects) {
  describe(`outgoing throughput features (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let admin: string;
    let john: string;
    let sink: SmtpSink;

    const api = async (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: unknown, headers: Record<string, string> = {}, key = admin) => {
      const res = await http.inject({ method, url, payload: payload as object, headers: { authorization: `Bearer ${key}`, ...headers } });
      return { status: res.statusCode, body: res.json<Record<string, unknown>>(), text: res.body };
    };
    const mails = () => t.app.database.db.selectFrom('outgoing_mails').selectAll().orderBy('id').execute();
    const settleQueue = () => t.app.database.db.updateTable('outgoing_mails').set({ state: 'cancelled' }).where('state', 'in', ['queued', 'sending']).execute();
    const server = async (extra: object = {}) => {
      const r = await api('POST', '/api/v1/outgoing-servers', {
        name: `sink ${Math.random()}`, host: '127.0.0.1', port: sink.port, security: 'starttls', allowSelfSigned: true,
        auth: 'password', username: 'john@example.com', password: passwords['john@example.com'], fromFilter: 'john@example.com', ...extra,
      });
      assert.equal(r.status, 201, r.text);
      return r.body as { id: number; poolSize: number | null; effectivePoolSize: number; ratePerMinute: number | null; effectiveRatePerMinute: number };
    };

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      admin = (await t.createUser('admin', 'admin')).apiKey;
      john = (await t.createUser('john', 'user')).apiKey;
      sink = await startSmtpSink({ auth: 'password', passwords, tls: 'starttls' });
    });
    after(async () => {
      await sink.stop();
      await t.close();
    });

    it('Idempotency-Key: a repeated request returns the first answer and queues once; another body → 422; keys are per user', async () => {
      const before = (await mails()).length;
      const body = { from: 'john@example.com', to: ['c@client.test'], subject: 'once', text: 'hello' };
      const first = await api('POST', '/api/v1/mails', body, { 'idempotency-key': 'k-1' }, john);
      assert.equal(first.status, 202, first.text);
      // The same body with its keys in another order is the same request.
      const again = await api('POST', '/api/v1/mails', { text: 'hello', subject: 'once', to: ['c@client.test'], from: 'john@example.com' }, { 'idempotency-key': 'k-1' }, john);
      assert.equal(again.status, 202, again.text);
      assert.deepEqual(again.body, first.body);
      // Retries racing each other still queue one mail.
      const racing = await Promise.all(Array.from({ length: 5 }, () => api('POST', '/api/v1/mails', { ...body, subject: 'race' }, { 'idempotency-key': 'k-race' }, john)));
      assert.deepEqual(racing.map((r) => r.status), [202, 202, 202, 202, 202], racing.map((r) => r.text).join('\n'));
      assert.equal(new Set(racing.map((r) => r.body.id)).size, 1, 'every racing retry answers with the same mail');
      const other = await api('POST', '/api/v1/mails', { ...body, subject: 'another mail' }, { 'idempotency-key': 'k-1' }, john);
      assert.equal(other.status, 422, other.text);
      assert.equal((other.body.error as { code: string }).code, 'JUNIPER_ERR_IDEMPOTENCY_KEY_REUSED');
      // Another user's key of the same name is a different key.
      const byAdmin = await api('POST', '/api/v1/mails', body, { 'idempotency-key': 'k-1' });
      assert.equal(byAdmin.status, 202, byAdmin.text);
      assert.notEqual(byAdmin.body.id, first.body.id);
      const rows = (await mails()).slice(before);
      assert.deepEqual(rows.map((r) => r.subject), ['once', 'race', 'once'], 'three mails queued in all');
      const bad = await api('POST', '/api/v1/mails', body, { 'idempotency-key': 'with space' }, john);
      assert.equal(bad.status, 400, bad.text);
      assert.equal((bad.body.error as { field?: string }).field, 'Idempotency-Key', 'the error names the header at fault');
      // A key older than 24 hours is free again: its first answer is forgotten.
      await t.app.database.db.updateTable('idempotency_keys').set({ created_at: Date.now() - 25 * 3600_000 }).where('key', '=', 'k-1').execute();
      const later = await api('POST', '/api/v1/mails', { ...body, subject: 'a day later' }, { 'idempotency-key': 'k-1' }, john);
      assert.equal(later.status, 202, later.text);
      assert.notEqual(later.body.id, first.body.id);
      assert.equal(await t.app.services.queue.purgeIdempotencyKeys(Date.now() + 25 * 3600_000), 3, 'purge forgets the keys past 24 hours');
      await settleQueue();
    });

    it('POST /api/v1/mails/batch stores the accepted mails in one go and answers each one, in order', async () => {
      const before = (await mails()).length;
      const res = await api(
        'POST',
        '/api/v1/mails/batch',
        {
          mails: [
            { from: 'john@example.com', to: ['a@client.test'], subject: 'b1', text: 'x' },
            { from: 'john@example.com', to: ['not an address'], subject: 'b2', text: 'x' },
            { from: 'someone-else@example.com', to: ['a@client.test'], subject: 'b3', text: 'x' },
            { from: 'john@example.com', to: ['b@client.test'], subject: 'b4', text: 'x', attachments: [{ filename: 'a.txt', contentBase64: Buffer.from('pdf').toString('base64') }] },
          ],
        },
        {},
        john,
      );
      assert.equal(res.status, 200, res.text);
      const results = res.body.results as { index: number; status: number; id?: number; error?: { code: string } }[];
      assert.deepEqual(results.map((r) => [r.index, r.status]), [[0, 202], [1, 400], [2, 403], [3, 202]]);
      assert.equal(results[1]!.error!.code, 'JUNIPER_ERR_VALIDATION');
      assert.equal((results[1]!.error as { field?: string }).field, 'to', 'a refused mail of a batch names its field at fault');
      assert.equal(results[2]!.error!.code, 'JUNIPER_ERR_FORBIDDEN');
      assert.equal(res.body.queued, 2);
      assert.equal(res.body.refused, 2);
      const rows = (await mails()).slice(before);
      assert.deepEqual(rows.map((r) => [r.id, r.subject]), [[results[0]!.id, 'b1'], [results[3]!.id, 'b4']]);
      const attachments = await t.app.database.db.selectFrom('outgoing_attachments').select('mail_id').where('mail_id', '=', results[3]!.id!).execute();
      assert.equal(attachments.length, 1);

      const empty = await api('POST', '/api/v1/mails/batch', { mails: [] });
      assert.equal(empty.status, 400, empty.text);
      assert.equal((empty.body.error as { field?: string }).field, 'mails');
      // A mail the schema refuses names the first path it found wrong, in a batch within the mail.
      const wrongType = { from: 'john@example.com', to: ['a@client.test'], subject: 5, text: 'x' };
      const single = await api('POST', '/api/v1/mails', wrongType);
      assert.equal(single.status, 400, single.text);
      assert.deepEqual(single.body.error, { code: 'JUNIPER_ERR_VALIDATION', message: (single.body.error as { message: string }).message, field: 'subject' });
      const inBatch = await api('POST', '/api/v1/mails/batch', { mails: [wrongType] });
      assert.equal((inBatch.body.results as { error?: { field?: string } }[])[0]!.error?.field, 'subject', inBatch.text);
      const nested = await api('POST', '/api/v1/mails/batch', { mails: {} });
      assert.equal((nested.body.error as { field?: string }).field, 'mails', nested.text);
      const tooMany = await api('POST', '/api/v1/mails/batch', { mails: Array.from({ length: 1001 }, () => ({ from: 'john@example.com', to: ['a@client.test'], subject: 's', text: 'x' })) });
      assert.equal(tooMany.status, 400, tooMany.text);
      assert.equal((tooMany.body.error as { field?: string }).field, 'mails');
      assert.equal((await mails()).length, before + 2, 'a refused batch queues nothing');
      await settleQueue();
    });

    it('pool size and rate limit are server fields with defaults by kind; invalid values are refused', async () => {
      const plain = await server();
      assert.deepEqual([plain.poolSize, plain.effectivePoolSize, plain.ratePerMinute, plain.effectiveRatePerMinute], [null, 5, null, 0]);
      // An Outlook server needs Microsoft Outlook installed (Apps).
      await t.app.services.settings.update({ outlook: { enabled: true } }, cliActor);
      const outlook = await api('POST', '/api/v1/outgoing-servers', { name: 'o365', auth: 'outlook', username: 'john@example.com' });
      assert.equal(outlook.status, 201, outlook.text);
      assert.deepEqual([outlook.body.effectivePoolSize, outlook.body.effectiveRatePerMinute], [2, 30], 'Outlook follows Microsoft: 30 mails a minute');
      const patched = await api('PATCH', `/api/v1/outgoing-servers/${outlook.body.id as number}`, { poolSize: 3, ratePerMinute: 0 });
      assert.equal(patched.status, 200, patched.text);
      assert.deepEqual([patched.body.poolSize, patched.body.effectivePoolSize, patched.body.ratePerMinute, patched.body.effectiveRatePerMinute], [3, 3, 0, 0]);
      assert.equal((await api('PATCH', `/api/v1/outgoing-servers/${plain.id}`, { poolSize: 0 })).status, 400);
      assert.equal((await api('PATCH', `/api/v1/outgoing-servers/${plain.id}`, { ratePerMinute: -1 })).status, 400);
      for (const id of [plain.id, outlook.body.id as number]) await api('DELETE', `/api/v1/outgoing-servers/${id}`);
    });

    it('the server form and `juniper servers` set both fields; empty or "default" means the default for the kind', async () => {
      const browser = new FormBrowser(http);
      await browser.signIn('admin', 'pw-admin-0123456789');
      await browser.get('/outgoing-servers/new');
      const fields = { name: 'form server', auth: 'none', host: '127.0.0.1', port: String(sink.port), security: 'starttls', username: '', fromFilter: 'form@example.com', priority: '10', active: 'on' };
      const created = await browser.post('/outgoing-servers/new', { ...fields, poolSize: '4', ratePerMinute: '120' });
      assert.equal(created.statusCode, 200, created.body);
      const row = (await t.app.services.outgoingServers.list()).find((r) => r.name === 'form server')!;
      assert.deepEqual([row.pool_size, row.rate_per_minute], [4, 120]);
      assert.match(created.body, /name="poolSize" value="4"/);
      const cleared = await browser.post(`/outgoing-servers/${row.id}`, { ...fields, poolSize: '', ratePerMinute: '' });
      assert.equal(cleared.statusCode, 200, cleared.body);
      assert.deepEqual(Object.values(await t.app.database.db.selectFrom('outgoing_servers').select(['pool_size', 'rate_per_minute']).where('id', '=', row.id).executeTakeFirstOrThrow()), [null, null]);

      const db = t.config.database;
      const env = cliEnv(t.config.dataDir, db.kind === 'postgres' ? db.url : `sqlite:${db.file}`);
      const set = runJuniper(env, ['servers', 'update', String(row.id), '--pool-size', '3', '--rate', '0']);
      assert.equal(set.code, 0, set.stderr);
      assert.match(set.stdout, /pool 3\trate unlimited/);
      const back = runJuniper(env, ['servers', 'update', String(row.id), '--pool-size', 'default', '--rate', 'default']);
      assert.equal(back.code, 0, back.stderr);
      assert.match(back.stdout, /pool 5\trate unlimited/);
      const wrong = runJuniper(env, ['servers', 'update', String(row.id), '--pool-size', '99']);
      assert.notEqual(wrong.code, 0);
      assert.match(wrong.stderr, /from 1 to 50 connections/);
      await api('DELETE', `/api/v1/outgoing-servers/${row.id}`);
    });

    it('a rate-limited server paces mails: those past the next few seconds go back to the queue, no attempt counted, and are sent at their slot', async () => {
      await settleQueue();
      const s = await server({ ratePerMinute: 6 });
      const atSink = sink.messages.length;
      const ids: number[] = [];
      for (let i = 0; i < 3; i++) ids.push((await t.app.services.outbox.enqueue({ from: 'john@example.com', to: ['p@client.test'], subject: `paced ${i}`, text: 'x' }, null, cliActor)).id);
      const d = testDispatcher(t.app, 'pacing-worker');
      try {
        assert.equal(await d.dispatcher.runOnce(), 3);
        assert.equal(sink.messages.length - atSink, 1, 'one mail within the rate');
        const rows = (await mails()).filter((m) => ids.includes(m.id));
        assert.deepEqual(rows.map((r) => r.state), ['sent', 'queued', 'queued']);
        assert.deepEqual(rows.map((r) => r.attempts), [1, 0, 0], 'pacing is not an attempt');
        assert.deepEqual(rows.map((r) => r.failure_type), [null, 'paced', 'paced']);
        assert.match(rows[1]!.waiting_reason ?? '', /at most 6 mails a minute/);
        const [, second, third] = rows;
        assert.ok(second!.next_attempt_at - rows[0]!.updated_at >= 9_000, 'the second slot is 10 s after the first');
        assert.ok(third!.next_attempt_at - second!.next_attempt_at >= 10_000, 'slots are spaced evenly');
        assert.equal(await d.dispatcher.runOnce(), 0, 'nothing is due before its slot');
        d.advance(25_000);
        assert.equal(await d.drain(), 2);
        const after = (await mails()).filter((m) => ids.includes(m.id));
        assert.deepEqual(after.map((r) => [r.state, r.attempts, r.failure_type, r.waiting_reason]), [['sent', 1, null, null], ['sent', 1, null, null], ['sent', 1, null, null]]);
        assert.equal(sink.messages.length - atSink, 3);
      } finally {
        await d.close();
        await api('DELETE', `/api/v1/outgoing-servers/${s.id}`);
      }
    });

    it('mails sent together are recorded in one statement, each only by its lease holder', async () => {
      const { queue, outbox } = t.app.services;
      const a = await outbox.enqueue({ from: 'john@example.com', to: ['x@client.test'], subject: 'held', text: 'x' }, null, cliActor);
      const b = await outbox.enqueue({ from: 'john@example.com', to: ['x@client.test'], subject: 'held too', text: 'x' }, null, cliActor);
      const claimed = await queue.claim('holder', 10, 60_000);
      assert.deepEqual(claimed.map((m) => m.id), [a.id, b.id]);
      const outcome = { serverId: 1, effectiveFrom: 'john@example.com', envelopeFrom: 'john@example.com', response: '250 ok', rejected: [] };
      assert.deepEqual([...(await queue.markSentMany('not-the-holder', [{ id: a.id, ...outcome }, { id: b.id, ...outcome }]))], []);
      assert.deepEqual((await mails()).filter((m) => m.id === a.id || m.id === b.id).map((m) => m.state), ['sending', 'sending']);
      const done = await queue.markSentMany('holder', [{ id: a.id, ...outcome, rejected: [{ address: 'y@client.test', response: '550 no' }] }, { id: b.id, ...outcome }]);
      assert.deepEqual([...done].sort(), [a.id, b.id].sort());
      const rows = (await mails()).filter((m) => m.id === a.id || m.id === b.id);
      assert.deepEqual(rows.map((m) => [m.state, m.lease_owner, m.smtp_response, m.server_id]), [['sent', null, '250 ok', 1], ['sent', null, '250 ok', 1]]);
      assert.deepEqual(JSON.parse(rows[0]!.rejected_recipients!), [{ address: 'y@client.test', response: '550 no' }]);
      assert.equal(rows[1]!.rejected_recipients, null);
    });

    it('a mass mailing reads its shared attachment from the database once, and every recipient gets it', async () => {
      const s = await server({ poolSize: 2 });
      const pdf = Buffer.from(`%PDF-1.4 ${dialect} ${Date.now()}`).toString('base64');
      const atSink = sink.messages.length;
      const res = await api('POST', '/api/v1/mails/batch', {
        mails: Array.from({ length: 6 }, (_, i) => ({ from: 'john@example.com', to: [`m${i}@client.test`], subject: `mass ${i}`, text: 'x', attachments: [{ filename: 'offer.pdf', contentType: 'application/pdf', contentBase64: pdf }] })),
      });
      assert.equal(res.body.queued, 6, res.text);
      const reads = t.app.services.blobs.reads;
      const d = testDispatcher(t.app, 'mass-worker');
      try {
        assert.equal(await d.drain(), 6);
      } finally {
        await d.close();
      }
      assert.equal(t.app.services.blobs.reads - reads, 1, 'one read for six mails');
      const got = sink.messages.slice(atSink);
      assert.equal(got.length, 6);
      for (const m of got) assert.ok(m.raw.toString().includes('offer.pdf'), 'each mail carries the attachment');
      assert.deepEqual((await Promise.all(got.map(async (m) => (await headersOf(m.raw)).subject))).sort(), Array.from({ length: 6 }, (_, i) => `mass ${i}`));
      await api('DELETE', `/api/v1/outgoing-servers/${s.id}`);
    });

    it('a claimed mail reads its attachment only once its server has room for it (two mails per connection)', async () => {
      await settleQueue();
      const s = await server({ poolSize: 2 });
      const { blobs, outbox } = t.app.services;
      const n = 8;
      for (let i = 0; i < n; i++) {
        // Each its own bytes, so that every mail's attachment is a read of the database.
        const content = Buffer.alloc(300_000, `${dialect} ${Date.now()} ${i} `).toString('base64');
        await outbox.enqueue({ from: 'john@example.com', to: [`slot${i}@client.test`], subject: `slot ${i}`, text: 'x', attachments: [{ filename: `r${i}.bin`, contentType: 'application/octet-stream', contentBase64: content }] }, null, cliActor);
      }
      const atSink = sink.messages.length;
      const readsBefore = blobs.reads;
      // When the sink has the k-th message's bytes, at most k - 1 sends have settled (freeing their room), so at
      // most k - 1 + 2 × poolSize mails may have read their attachment (one written and one ready per connection).
      const readsAt: number[] = [];
      sink.setBehaviour({ data: () => void readsAt.push(blobs.reads - readsBefore) });
      const d = testDispatcher(t.app, 'slot-worker');
      try {
        assert.equal(await d.dispatcher.runOnce(), n, 'one round claims them all');
      } finally {
        await d.close();
        sink.setBehaviour({});
        await api('DELETE', `/api/v1/outgoing-servers/${s.id}`);
      }
      assert.equal(sink.messages.length - atSink, n);
      assert.equal(blobs.reads - readsBefore, n, 'every attachment read once');
      assert.equal(readsAt.length, n);
      const room = SLOTS_PER_CONNECTION * 2;
      readsAt.forEach((reads, k) => assert.ok(reads <= k + room, `message ${k + 1} arrived after ${reads} attachment reads (at most ${k + room})`));
      assert.ok(readsAt[0]! <= room && room < n, 'the first message arrives before the other mails claimed are built');
    });
  });
}
