// A raw .eml keeps its own Message-ID (`juniper send --eml`): the queue holds each Message-ID once, so a second
// copy is refused as a conflict (not a database error), and an absurd Message-ID is refused before it reaches an index.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cliActor } from '../../src/audit/audit-log.js';
import { isAppError } from '../../src/lib/errors.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';

const eml = (messageId: string | null) =>
  Buffer.from(`${messageId === null ? '' : `Message-ID: ${messageId}\r\n`}From: a@example.com\r\nTo: b@example.com\r\nSubject: raw\r\n\r\nhello\r\n`);

for (const dialect of dialects) {
  describe(`raw messages and their Message-ID (${dialect})`, () => {
    let t: TestApp;
    before(async () => {
      t = await startTestApp(dialect);
    });
    after(() => t.close());

    it('a second copy of a Message-ID is a conflict naming the first mail; without one the mail gets its own', async () => {
      const { outbox } = t.app.services;
      const first = await outbox.enqueueRaw(eml('<once@example.com>'), {}, null, cliActor);
      assert.equal(first.messageId, '<once@example.com>');
      await assert.rejects(outbox.enqueueRaw(eml('<once@example.com>'), {}, null, cliActor), (e) => isAppError(e) && e.code === 'JUNIPER_ERR_CONFLICT' && e.message.includes(`Mail ${first.id} already has the Message-ID <once@example.com>`));
      const fresh = await outbox.enqueueRaw(eml(null), {}, null, cliActor);
      assert.match(fresh.messageId, /^<.+@.+>$/);
      assert.notEqual(fresh.id, first.id);
    });

    it('a 3,000-character Message-ID is refused with what to do, before the database sees it', async () => {
      const long = `<${'x'.repeat(3000)}@example.com>`;
      await assert.rejects(t.app.services.outbox.enqueueRaw(eml(long), {}, null, cliActor), (e) => isAppError(e) && e.code === 'JUNIPER_ERR_VALIDATION' && /remove the Message-ID header/.test(e.message));
    });
  });
}
