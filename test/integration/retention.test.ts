// Retention (issue 11): the four system parameters (validated), and a housekeeping run that removes what is
// older than they say and nothing else: finished outgoing mails (never a queued one), their bodies and
// attachments, the original .eml of fetched messages, quarantined messages, and then only blobs that nothing
// references; the counts reach the metrics. Both databases.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cliActor } from '../../src/audit/audit-log.js';
import { loadProcessMetrics } from '../../src/metrics/process-metrics.js';
import { Retention, RETENTION_KEYS } from '../../src/retention/retention.js';
import { EventScanner } from '../../src/webhooks/event-scanner.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';

const DAY = 86_400_000;

for (const dialect of dialects) {
  describe(`retention (${dialect})`, () => {
    let t: TestApp;
    before(async () => {
      t = await startTestApp(dialect);
    });
    after(async () => t.close());

    it('refuses a retention value that is not a whole number of days, naming the key', async () => {
      await assert.rejects(t.app.services.parameters.set(RETENTION_KEYS.sentMails, 'forever', cliActor), /retention\.sent_mails\.days must be a whole number of days of at least 1/);
      await assert.rejects(t.app.services.parameters.set(RETENTION_KEYS.quarantined, '0', cliActor), /at least 1/);
    });

    it('removes old finished mails, bodies, raw messages, quarantine and unreferenced blobs, and nothing newer or still queued', async () => {
      const { db } = t.app.database;
      const { outbox, blobs, parameters } = t.app.services;
      const now = Date.now();
      const mail = async (subject: string, content: string) =>
        (await outbox.enqueue({ from: 'notifications@example.com', to: ['a@client.test'], subject, text: `body of ${subject}`, attachments: [{ filename: 'a.txt', contentType: 'text/plain', contentBase64: Buffer.from(content).toString('base64') }] }, null, cliActor)).id;
      const ancient = await mail('ancient', 'ancient attachment');
      const old = await mail('old', 'old attachment');
      const fresh = await mail('fresh', 'fresh attachment');
      const queuedOld = await mail('queued old', 'queued attachment');
      await db.updateTable('outgoing_mails').set({ state: 'sent', sent_at: now - 100 * DAY, updated_at: now - 100 * DAY }).where('id', '=', ancient).execute();
      await db.updateTable('outgoing_mails').set({ state: 'failed', updated_at: now - 40 * DAY }).where('id', '=', old).execute();
      await db.updateTable('outgoing_mails').set({ state: 'sent', updated_at: now - DAY }).where('id', '=', fresh).execute();
      await db.updateTable('outgoing_mails').set({ updated_at: now - 400 * DAY }).where('id', '=', queuedOld).execute();

      const raw = async (text: string) => blobs.put(Buffer.from(text));
      const message = async (subject: string, ageDays: number, quarantined: boolean, rawSha: string) =>
        (
          await db
            .insertInto('messages')
            .values({ direction: 'in', dedupe_key: `k:${subject}:${dialect}`, to_addrs: '[]', cc_addrs: '[]', subject, size: 10, quarantined: quarantined ? 1 : 0, raw_sha256: rawSha, created_at: now - ageDays * DAY, ...(subject === 'bounce' ? { bounced_mail_id: ancient } : {}) })
            .returning('id')
            .executeTakeFirstOrThrow()
        ).id;
      const oldMessage = await message('bounce', 60, false, await raw('old raw'));
      const newMessage = await message('new', 1, false, await raw('new raw'));
      await message('old quarantined', 60, true, await raw('quarantined raw'));
      const newQuarantined = await message('new quarantined', 1, true, await raw('new quarantined raw'));
      // Every blob is "old" for the grace period; the referenced ones must stay anyway.
      await db.updateTable('blobs').set({ created_at: now - 2 * DAY }).execute();
      const orphan = await raw('an orphan');
      await db.updateTable('blobs').set({ created_at: now - 2 * DAY }).where('sha256', '=', orphan).execute();
      const newOrphan = await blobs.put(Buffer.from('a new orphan'));
      // Old blobs stored again (an attachment reused by a mail about to be committed) are young again.
      const reused = await raw('reused by put');
      const [reusedMany] = await blobs.putMany([Buffer.from('reused by putMany')]);
      await db.updateTable('blobs').set({ created_at: now - 2 * DAY }).where('sha256', 'in', [reused, reusedMany!]).execute();
      await blobs.put(Buffer.from('reused by put'));
      await blobs.putMany([Buffer.from('reused by putMany'), Buffer.from('reused by putMany')]);

      await parameters.set(RETENTION_KEYS.sentMails, '90', cliActor);
      await parameters.set(RETENTION_KEYS.mailBodies, '30', cliActor);
      await parameters.set(RETENTION_KEYS.incomingRaw, '30', cliActor);
      await parameters.set(RETENTION_KEYS.quarantined, '30', cliActor);
      // Numbers, not the metric's objects: prom-client hands back its live values.
      const count = async (kind: string) => (await (await loadProcessMetrics()).retentionDeleted.get()).values.find((v) => v.labels.kind === kind)?.value ?? 0;
      const before = { sentMails: await count('sent_mails'), blobs: await count('blobs') };
      const counts = await new Retention(db, parameters, t.app.logger).run(now);

      const mails = await db.selectFrom('outgoing_mails').select(['id', 'text_body', 'raw_sha256']).orderBy('id').execute();
      assert.deepEqual(mails.map((m) => m.id), [old, fresh, queuedOld], 'the sent mail past 90 days is gone; a queued one stays whatever its age');
      assert.equal(mails.find((m) => m.id === old)!.text_body, 'body of old', 'a failed mail keeps its body whatever its age: it can still be retried');
      assert.equal(mails.find((m) => m.id === fresh)!.text_body, 'body of fresh');
      assert.equal(mails.find((m) => m.id === queuedOld)!.text_body, 'body of queued old');
      const attachments = await db.selectFrom('outgoing_attachments').select('mail_id').orderBy('mail_id').execute();
      assert.deepEqual(attachments.map((a) => a.mail_id), [old, fresh, queuedOld]);

      const messages = await db.selectFrom('messages').select(['id', 'raw_sha256', 'bounced_mail_id']).orderBy('id').execute();
      assert.deepEqual(messages.map((m) => m.id), [oldMessage, newMessage, newQuarantined], 'the old quarantined message is gone');
      assert.equal(messages[0]!.raw_sha256, null, 'the old raw .eml is gone, the message stays');
      assert.equal(messages[0]!.bounced_mail_id, null, 'its link to the deleted mail is cleared');
      assert.notEqual(messages[1]!.raw_sha256, null);

      const left = new Set((await db.selectFrom('blobs').select('sha256').execute()).map((b) => b.sha256));
      assert.ok(!left.has(orphan), 'an old unreferenced blob is gone');
      assert.ok(left.has(newOrphan), 'a blob younger than an hour stays (it may be mid-enqueue)');
      assert.ok(left.has(reused) && left.has(reusedMany!), 'an old blob stored again stays: put and putMany refresh its time');
      for (const id of [old, fresh, queuedOld]) {
        const att = await db.selectFrom('outgoing_attachments').select('blob_sha256').where('mail_id', '=', id).executeTakeFirstOrThrow();
        assert.ok(left.has(att.blob_sha256), 'attachments still referenced stay');
      }
      assert.ok(left.has(messages[1]!.raw_sha256!));
      assert.deepEqual(counts, { sentMails: 1, mailBodies: 1, incomingRaw: 1, quarantined: 1, webhookDeliveries: 0, blobs: counts.blobs });
      assert.ok(counts.blobs >= 4, `blobs ${counts.blobs}: the orphan, the deleted mail's attachment and two raw messages`);
      assert.equal((await count('sent_mails')) - before.sentMails, 1);
      assert.equal((await count('blobs')) - before.blobs, counts.blobs);
      assert.deepEqual(await new Retention(db, parameters, t.app.logger).run(now), { sentMails: 0, mailBodies: 0, incomingRaw: 0, quarantined: 0, webhookDeliveries: 0, blobs: 0 }, 'a second run finds nothing');
    });

    it('prunes finished webhook deliveries after 30 days by default, and the scanner does not queue their events again', async () => {
      const { db } = t.app.database;
      const { parameters } = t.app.services;
      const now = Date.now();
      assert.equal(await parameters.value(RETENTION_KEYS.webhookDeliveries), '30');
      const hook = (await db.insertInto('webhooks').values({ url: 'https://hooks.example.com/x', events: '["mail.sent"]', secret_enc: 'x', active: 1, created_by_user_id: null, created_at: now - 100 * DAY, updated_at: now, deleted_at: null }).returning('id').executeTakeFirstOrThrow()).id;
      const sentMail = async (ageDays: number) => {
        const { id } = await t.app.services.outbox.enqueue({ from: 'notifications@example.com', to: ['b@client.test'], subject: `sent ${ageDays} days ago`, text: 'x' }, null, cliActor);
        await db.updateTable('outgoing_mails').set({ state: 'sent', sent_at: now - ageDays * DAY, updated_at: now - ageDays * DAY }).where('id', '=', id).execute();
        return id;
      };
      const oldMail = await sentMail(40);
      const newMail = await sentMail(2);
      const delivery = (subject: string, state: 'pending' | 'delivered' | 'failed', ageDays: number) => ({ webhook_id: hook, event: 'mail.sent', subject, payload: '{}', state, next_attempt_at: 0, created_at: now - ageDays * DAY });
      await db.insertInto('webhook_deliveries').values([delivery(`mail:${oldMail}`, 'delivered', 40), delivery('mail:failed-old', 'failed', 40), delivery('mail:pending-old', 'pending', 40), delivery(`mail:${newMail}`, 'delivered', 2)]).execute();

      const counts = await new Retention(db, parameters, t.app.logger).run(now);
      assert.equal(counts.webhookDeliveries, 2);
      const left = await db.selectFrom('webhook_deliveries').select('subject').where('webhook_id', '=', hook).orderBy('id').execute();
      assert.deepEqual(left.map((d) => d.subject), ['mail:pending-old', `mail:${newMail}`], 'pending ones stay whatever their age');
      assert.equal(await new EventScanner(db, parameters).scan(now), 0, 'the pruned delivery\'s mail is older than the window: not queued again');
      await db.deleteFrom('webhooks').where('id', '=', hook).execute();
    });
  });
}
