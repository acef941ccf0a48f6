// Audit rows are written in the transaction that makes the change they describe: when the audit row cannot be
// written, the change is rolled back too, so the log never misses a change that happened.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { cliActor } from '../../src/audit/audit-log.js';
import { cliPrincipal } from '../../src/cli/principal.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';

for (const dialect of dialects) {
  describe(`audit rows share the change's transaction (${dialect})`, () => {
    let t: TestApp;
    before(async () => {
      t = await startTestApp(dialect);
    });
    after(() => t.close());

    const server = { name: 'relay', host: 'smtp.example.com', port: 587, security: 'starttls' as const, auth: 'none' as const, fromFilter: 'example.com', priority: 10, active: true, allowSelfSigned: false };

    it('a change is written together with its audit row', async () => {
      const { outgoingServers, audit } = t.app.services;
      const row = await outgoingServers.create(server, cliPrincipal, cliActor);
      await outgoingServers.update(row.id, { name: 'relay 2' }, cliPrincipal, cliActor);
      const actions = (await audit.recent(10)).filter((e) => e.target === `outgoing_server:${row.id}`).map((e) => e.action);
      assert.deepEqual(actions, ['outgoing_server.update', 'outgoing_server.create']);
    });

    it('when the audit row cannot be written, the server, parameter and user changes are rolled back', async () => {
      const { outgoingServers, parameters, users } = t.app.services;
      const db = t.app.database.db;
      const row = await outgoingServers.create({ ...server, name: 'kept' }, cliPrincipal, cliActor);
      await sql`ALTER TABLE audit_log RENAME TO audit_log_away`.execute(db);
      try {
        await assert.rejects(outgoingServers.update(row.id, { name: 'renamed' }, cliPrincipal, cliActor));
        await assert.rejects(outgoingServers.create({ ...server, name: 'never' }, cliPrincipal, cliActor));
        await assert.rejects(parameters.set('mail.catchall.domain', 'example.org', cliActor));
        await assert.rejects(users.create({ login: 'ghost', email: 'ghost@example.com', role: 'user' }, cliActor));
      } finally {
        await sql`ALTER TABLE audit_log_away RENAME TO audit_log`.execute(db);
      }
      assert.equal((await outgoingServers.get(row.id)).name, 'kept');
      assert.equal((await outgoingServers.list()).some((s) => s.name === 'never'), false);
      assert.equal(await parameters.value('mail.catchall.domain'), undefined);
      assert.equal(await users.findByLogin('ghost'), undefined);
    });
  });
}
