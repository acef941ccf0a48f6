import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AuditLog, cliActor } from '../audit/audit-log.js';
import type { Database } from '../db/database.js';
import { AppError } from '../lib/errors.js';
import { dialects, freshDatabase } from '../../test/helpers/databases.js';
import { Parameters } from './parameters.js';

const admin = { userId: null, label: 'tester' };

function rejectsWith(code: string, messagePart: string) {
  return (e: unknown) => {
    assert.ok(e instanceof AppError, String(e));
    assert.equal(e.code, code);
    assert.ok(e.message.includes(messagePart), `"${e.message}" should contain "${messagePart}"`);
    return true;
  };
}

for (const dialect of dialects) {
  describe(`parameters on ${dialect}`, () => {
    let database: Database;
    let parameters: Parameters;
    let audit: AuditLog;
    before(async () => {
      database = await freshDatabase(dialect);
      audit = new AuditLog(database.db);
      parameters = new Parameters(database.db, audit);
    });
    after(async () => database.close());

    it('stores the normalised value, overwrites it on a second set, and audits key and value', async () => {
      const first = await parameters.set('mail.catchall.domain', ' Example.COM ', admin);
      assert.deepEqual(first, {
        key: 'mail.catchall.domain',
        value: 'example.com',
        description: 'Domain of the notifications, bounce and catch-all addresses, e.g. example.com.',
      });
      await parameters.set('mail.catchall.domain', 'example.org', admin);
      assert.equal((await parameters.get('mail.catchall.domain')).value, 'example.org');
      const rows = await database.db.selectFrom('parameters').selectAll().where('key', '=', 'mail.catchall.domain').execute();
      assert.equal(rows.length, 1, 'an upsert, not a second row');
      const entry = (await audit.recent(1))[0]!;
      assert.equal(entry.action, 'parameter.set');
      assert.equal(entry.actor, 'tester');
      assert.deepEqual(JSON.parse(entry.details!), { key: 'mail.catchall.domain', value: 'example.org' });
    });

    it('refuses a bad value with the key and the rule, and keeps the old value', async () => {
      await parameters.set('mail.catchall.domain', 'example.com', admin);
      await assert.rejects(
        parameters.set('mail.catchall.domain', 'not a domain', admin),
        rejectsWith('JUNIPER_ERR_INVALID_PARAMETER', 'mail.catchall.domain must be a domain name such as example.com (got "not a domain")'),
      );
      assert.equal(await parameters.value('mail.catchall.domain'), 'example.com');
    });

    it('lists stored keys and the defaults of unset known keys, marked, in key order', async () => {
      await parameters.set('zz.custom', 'free text', admin);
      const list = await parameters.list();
      assert.deepEqual(list.map((p) => p.key), [...list.map((p) => p.key)].sort());
      const massMailing = list.find((p) => p.key === 'mass_mailing.outgoing_mail_server');
      assert.equal(massMailing?.value, 'false');
      assert.equal(massMailing?.isDefault, true);
      assert.equal(list.some((p) => p.key === 'microsoft_outlook.endpoint'), false, 'unset, the endpoint follows Settings');
      assert.deepEqual(list.find((p) => p.key === 'zz.custom'), { key: 'zz.custom', value: 'free text' });
      assert.equal(list.find((p) => p.key === 'mail.catchall.domain')?.isDefault, undefined);
      assert.equal(list.some((p) => p.key === 'mail.bounce.alias'), false, 'unset keys without a default are not listed');
    });

    it('answers get for a default, and 404 for an unset free key or a known key without default', async () => {
      assert.deepEqual(await parameters.get('mass_mailing.outgoing_mail_server'), {
        key: 'mass_mailing.outgoing_mail_server',
        value: 'false',
        isDefault: true,
        description: 'Send mass mailings through the dedicated server mass_mailing.mail_server_id (true/false).',
      });
      await assert.rejects(parameters.get('no.such.key'), rejectsWith('JUNIPER_ERR_UNKNOWN_PARAMETER', 'No system parameter "no.such.key" is set'));
      await assert.rejects(
        parameters.get('mail.bounce.alias'),
        rejectsWith('JUNIPER_ERR_UNKNOWN_PARAMETER', 'mail.bounce.alias is not set and has no default'),
      );
      assert.equal(await parameters.value('no.such.key'), undefined);
      assert.equal(await parameters.value('mass_mailing.outgoing_mail_server'), 'false');
    });

    it('unsets a key (falling back to its default), reports whether anything was removed, and audits only removals', async () => {
      await parameters.set('microsoft_outlook.endpoint', 'http://127.0.0.1:9999/tenant', admin);
      assert.equal(await parameters.value('microsoft_outlook.endpoint'), 'http://127.0.0.1:9999/tenant/');
      assert.equal(await parameters.unset('microsoft_outlook.endpoint', admin), true);
      assert.equal((await audit.recent(1))[0]!.action, 'parameter.unset');
      assert.equal(await parameters.value('microsoft_outlook.endpoint'), undefined, 'unset again: it follows Settings');
      const before = (await audit.recent(1))[0]!.id;
      assert.equal(await parameters.unset('microsoft_outlook.endpoint', admin), false);
      assert.equal((await audit.recent(1))[0]!.id, before);
    });

    it('seeds a value only when the key has none', async () => {
      assert.equal(await parameters.seedIfUnset('web.base.url', 'https://seeded.example.com/'), true);
      assert.equal(await parameters.value('web.base.url'), 'https://seeded.example.com');
      await parameters.set('web.base.url', 'https://chosen.example.com', cliActor);
      assert.equal(await parameters.seedIfUnset('web.base.url', 'https://seeded.example.com'), false);
      assert.equal(await parameters.value('web.base.url'), 'https://chosen.example.com');
      await assert.rejects(parameters.seedIfUnset('mail.catchall.domain', 'nope'), rejectsWith('JUNIPER_ERR_INVALID_PARAMETER', 'mail.catchall.domain'));
    });

    it('gives routing a typed snapshot of the known keys', async () => {
      await parameters.set('mail.catchall.domain', 'example.com', admin);
      await parameters.set('mail.default.from', 'notifications', admin);
      await parameters.set('mass_mailing.outgoing_mail_server', 'yes', admin);
      await parameters.set('mass_mailing.mail_server_id', '12', admin);
      const snap = await parameters.snapshot();
      assert.equal(snap.catchallDomain, 'example.com');
      assert.equal(snap.defaultFrom, 'notifications');
      assert.equal(snap.massMailingDedicatedServer, true);
      assert.equal(snap.massMailingServerId, 12);
      assert.equal(snap.outlookEndpoint, null, 'unset: the settings derive the authority');
    });

    it('answers snapshot from memory, but never with a value older than a write through the service', async () => {
      await parameters.set('mail.default.from', 'first', admin);
      assert.equal((await parameters.snapshot()).defaultFrom, 'first');
      await parameters.set('mail.default.from', 'second', admin);
      assert.equal((await parameters.snapshot()).defaultFrom, 'second', 'a set invalidates the kept snapshot');
      await parameters.unset('mail.default.from', admin);
      assert.equal((await parameters.snapshot()).defaultFrom, (await parameters.value('mail.default.from')) ?? null, 'an unset too');
      // A write in a transaction that rolls back: the snapshot read inside it sees the write, the one after does not.
      await parameters.set('mail.default.from', 'kept', admin);
      await assert.rejects(
        database.db.transaction().execute(async (trx) => {
          const inTrx = parameters.withTransaction(trx);
          await inTrx.set('mail.default.from', 'rolled-back', admin);
          assert.equal((await inTrx.snapshot()).defaultFrom, 'rolled-back');
          throw new Error('roll back');
        }),
        /roll back/,
      );
      assert.equal((await parameters.snapshot()).defaultFrom, 'kept');
    });

    it('keeps free keys and values verbatim, tabs included', async () => {
      await parameters.set('my_app.greeting', '  Hello\tworld  ', admin);
      assert.equal(await parameters.value('my_app.greeting'), '  Hello\tworld  ');
      await assert.rejects(parameters.set('My.Key', 'x', admin), rejectsWith('JUNIPER_ERR_INVALID_PARAMETER', 'A parameter key must be'));
    });
  });
}
