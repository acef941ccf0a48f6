// The group commit of sent mails on both databases: outcomes that arrive together are written by few joint
// statements (a burst reaching FLUSH_AT goes at once, the rest joins while that write runs), a lone outcome
// is written after the gathering time, and only the lease holder's rows change.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cliActor } from '../audit/audit-log.js';
import { cliPrincipal } from '../cli/principal.js';
import { dialects } from '../../test/helpers/databases.js';
import { startTestApp, type TestApp } from '../../test/helpers/app.js';
import type { SentItem } from './queue.js';
import { SentWriter } from './sent-writer.js';

for (const dialect of dialects) {
  describe(`sent writer (${dialect})`, () => {
    let t: TestApp;
    let serverId: number;
    before(async () => {
      t = await startTestApp(dialect);
      // Only its id is needed (sent rows name their server); nothing connects to it.
      serverId = (
        await t.app.services.outgoingServers.create(
          { name: 'unused', host: '127.0.0.1', port: 25, security: 'none', auth: 'none', fromFilter: null, priority: 10, active: true, allowSelfSigned: false },
          cliPrincipal,
          cliActor,
        )
      ).id;
    });
    after(async () => {
      await t.close();
    });

    /** Enqueues and claims `n` mails for `owner`; their sent outcomes, ready to record. */
    const claimed = async (n: number, owner: string): Promise<SentItem[]> => {
      const { outbox, queue } = t.app.services;
      for (let i = 0; i < n; i++) await outbox.enqueue({ from: 'notifications@example.com', to: [`r${i}@client.test`], subject: `m${i}`, text: 'body' }, null, cliActor);
      const mails = await queue.claim(owner, n, 60_000);
      assert.equal(mails.length, n);
      return mails.map((m) => ({ id: m.id, serverId, effectiveFrom: m.from_header, envelopeFrom: 'notifications@example.com', response: `250 2.0.0 OK ${m.id}`, rejected: [] }));
    };
    const states = async (ids: number[]) =>
      (await t.app.database.db.selectFrom('outgoing_mails').select(['state', 'smtp_response', 'lease_owner']).where('id', 'in', ids).orderBy('id').execute());

    it('writes a burst of outcomes in few joint statements, each mail once its row is written', async () => {
      const items = await claimed(40, 'holder');
      const { queue } = t.app.services;
      const calls: number[] = [];
      const writer = new SentWriter(
        {
          markSentMany: (owner, batch) => {
            calls.push(batch.length);
            return queue.markSentMany(owner, batch);
          },
          markSent: (id, owner, outcome) => queue.markSent(id, owner, outcome),
        },
        'holder',
      );
      await Promise.all(items.map((it) => writer.record(it)));
      // 16 go at once, the other 24 gather while that write runs: two statements for 40 mails.
      assert.deepEqual(calls, [16, 24]);
      const rows = await states(items.map((it) => it.id));
      assert.ok(rows.every((r, k) => r.state === 'sent' && r.lease_owner === null && r.smtp_response === items[k]!.response));
    });

    it('writes a lone outcome too, and never a row whose lease another worker holds', async () => {
      const [mine] = await claimed(1, 'holder');
      const [theirs] = await claimed(1, 'other-worker');
      const writer = new SentWriter(t.app.services.queue, 'holder');
      await writer.record(mine!);
      await writer.record(theirs!);
      const [a, b] = await states([mine!.id, theirs!.id]);
      assert.equal(a!.state, 'sent');
      assert.deepEqual({ state: b!.state, lease: b!.lease_owner }, { state: 'sending', lease: 'other-worker' });
    });
  });
}
