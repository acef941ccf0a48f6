// Creating a mail server that signs in with Microsoft Outlook, or switching one to it, while Outlook is
// uninstalled is refused (outlook-in-use.ts), and is ordered against an uninstall in flight: the two cannot both
// succeed. Real MailServers and Settings on both databases.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, beforeEach, describe, it } from 'node:test';
import { AuditLog } from '../audit/audit-log.js';
import { cliPrincipal } from '../cli/principal.js';
import type { Database } from '../db/database.js';
import { incomingKind, type IncomingServers } from '../incoming/servers.js';
import { AppError } from '../lib/errors.js';
import { OutgoingServers } from '../outgoing/servers.js';
import { Parameters } from '../settings/parameters.js';
import { Settings } from '../settings/settings.js';
import { createVault } from '../vault/index.js';
import { dialects, freshDatabase } from '../../test/helpers/databases.js';
import { MailServers } from './mail-servers.js';

const actor = { userId: null, label: 'tester' };

const refused = (noun: string, name: string) => (e: unknown) => {
  assert.ok(e instanceof AppError, String(e));
  assert.equal(e.code, 'JUNIPER_ERR_SETUP_INCOMPLETE');
  assert.equal(e.status, 409);
  assert.equal(
    e.message,
    `Microsoft Outlook is not installed, so the ${noun} "${name}" cannot sign in with it: install Microsoft Outlook in Apps first (an admin: remove the Apps filter, search Outlook, Install), or choose another sign-in.`,
  );
  assert.deepEqual(e.details, { field: 'auth' });
  return true;
};

for (const dialect of dialects) {
  describe(`Outlook servers while Microsoft Outlook is uninstalled (${dialect})`, () => {
    let database: Database;
    let settings: Settings;
    let outgoing: OutgoingServers;
    let incoming: IncomingServers;
    before(async () => {
      database = await freshDatabase(dialect);
      const audit = new AuditLog(database.db);
      const vault = createVault([randomBytes(32)], 'test');
      settings = new Settings(database.db, vault, new Parameters(database.db, audit), audit);
      outgoing = new OutgoingServers(database.db, vault, audit);
      incoming = new MailServers(database.db, vault, audit, incomingKind);
    });
    beforeEach(async () => {
      await database.db.deleteFrom('outgoing_servers').execute();
      await database.db.deleteFrom('incoming_servers').execute();
      await database.db.deleteFrom('settings').execute();
    });
    after(async () => database.close());

    const outlookOut = (name: string) => outgoing.kind.createSchema.parse({ name, auth: 'outlook', username: 'notify@example.com' });
    const passwordOut = (name: string) => outgoing.kind.createSchema.parse({ name, host: '127.0.0.1', port: 587, auth: 'password', username: 'relay', password: 'relay-pw' });
    const outlookIn = (name: string) => incomingKind.createSchema.parse({ name, auth: 'outlook', username: 'support@example.com' });
    const passwordIn = (name: string) => incomingKind.createSchema.parse({ name, host: '127.0.0.1', port: 993, security: 'ssl', auth: 'password', username: 'support', password: 'support-pw' });
    const count = async () => Number((await database.db.selectFrom('outgoing_servers').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);

    it('refuses to create an Outlook server of either kind, and to switch one to Outlook, naming the fix; everything else is saved', async () => {
      assert.equal((await settings.get()).outlook.enabled, false, 'a new database has Outlook uninstalled');
      await assert.rejects(outgoing.create(outlookOut('Notifications'), cliPrincipal, actor), refused('outgoing mail server', 'Notifications'));
      await assert.rejects(incoming.create(outlookIn('Support'), cliPrincipal, actor), refused('incoming mail server', 'Support'));
      assert.equal(await count(), 0, 'nothing was created');

      const relay = await outgoing.create(passwordOut('Relay'), cliPrincipal, actor);
      const inbox = await incoming.create(passwordIn('Inbox'), cliPrincipal, actor);
      await assert.rejects(outgoing.update(relay.id, { name: 'Relay 365', auth: 'outlook', username: 'notify@example.com' }, cliPrincipal, actor), refused('outgoing mail server', 'Relay 365'));
      await assert.rejects(incoming.update(inbox.id, { auth: 'outlook', username: 'support@example.com' }, cliPrincipal, actor), refused('incoming mail server', 'Inbox'));
      assert.deepEqual([(await outgoing.get(relay.id)).auth, (await outgoing.get(relay.id)).name, (await incoming.get(inbox.id)).auth], ['password', 'Relay', 'password'], 'nothing was saved');
      // Saving a server that does not sign in with Outlook is never refused.
      assert.equal((await outgoing.update(relay.id, { priority: 5 }, cliPrincipal, actor)).priority, 5);

      // Installed, all of it goes through; a server already on Outlook keeps saving once it is archived and
      // Outlook uninstalled again (an archived server does not hold the uninstall up).
      await settings.update({ outlook: { enabled: true } }, actor);
      const sending = await outgoing.create(outlookOut('Notifications'), cliPrincipal, actor);
      assert.equal((await outgoing.update(relay.id, { auth: 'outlook', username: 'relay@example.com' }, cliPrincipal, actor)).auth, 'outlook');
      assert.equal((await incoming.update(inbox.id, { auth: 'outlook', username: 'support@example.com' }, cliPrincipal, actor)).auth, 'outlook');
      for (const id of [sending.id, relay.id]) await outgoing.archive(id, cliPrincipal, actor);
      await incoming.archive(inbox.id, cliPrincipal, actor);
      await settings.update({ outlook: { enabled: false } }, actor);
      assert.equal((await outgoing.update(sending.id, { name: 'Old notifications' }, cliPrincipal, actor)).name, 'Old notifications');
    });

    it('orders a create and a switch after an uninstall in flight: they wait for it, then are refused', async () => {
      await settings.update({ outlook: { enabled: true } }, actor);
      const relay = await outgoing.create(passwordOut('Relay'), cliPrincipal, actor);
      for (const [what, save] of [
        ['create', () => outgoing.create(outlookOut('Created meanwhile'), cliPrincipal, actor)],
        ['switch', () => outgoing.update(relay.id, { auth: 'outlook', username: 'notify@example.com' }, cliPrincipal, actor)],
      ] as const) {
        await settings.update({ outlook: { enabled: true } }, actor);
        let release!: () => void;
        const held = new Promise<void>((resolve) => (release = resolve));
        let written!: () => void;
        const hasWritten = new Promise<void>((resolve) => (written = resolve));
        // What Settings.update does for an uninstall, held open between its write and its commit.
        const uninstall = database.db.transaction().execute(async (trx) => {
          await trx.updateTable('settings').set({ value: 'false' }).where('key', '=', 'outlook.enabled').execute();
          written();
          await held;
        });
        await hasWritten;
        let settled = false;
        // Its outcome is caught at once: it may reject the moment the uninstall commits, before the assertion
        // below is reached, and an unhandled rejection would fail the test on its own.
        const saving = save().then(
          () => `the ${what} was saved after the uninstall`,
          (e: unknown) => e,
        ).finally(() => (settled = true));
        try {
          await sleep(300);
          assert.equal(settled, false, `the ${what} waits for the uninstall`);
        } finally {
          release();
          await uninstall;
        }
        assert.ok(refused('outgoing mail server', what === 'create' ? 'Created meanwhile' : 'Relay')(await saving));
      }
      assert.deepEqual((await outgoing.list()).map((s) => [s.name, s.auth]), [['Relay', 'password']]);
    });
  });
}
