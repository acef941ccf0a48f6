import { secretExpiryWarning } from '../oauth/secret-expiry.js';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, beforeEach, describe, it } from 'node:test';
import { AuditLog } from '../audit/audit-log.js';
import type { Database } from '../db/database.js';
import { AppError } from '../lib/errors.js';
import { createVault } from '../vault/index.js';
import { dialects, freshDatabase } from '../../test/helpers/databases.js';
import { Parameters } from './parameters.js';
import { authorityFor, daysUntil, outlookInstalledLocked, Settings, type Cloud, type SettingsPatch } from './settings.js';

const admin = { userId: null, label: 'tester' };
const CLIENT_ID = '1B4F9C5E-0000-4000-8000-123456789ABC';
const SECRET = 'Xy8Q~s3cr3t-value-from-azure.ABCDEFGHIJ';
const NOW = Date.parse('2026-03-01T15:00:00Z');

function validationError(messagePart: string) {
  return (e: unknown) => {
    assert.ok(e instanceof AppError, String(e));
    assert.equal(e.code, 'JUNIPER_ERR_VALIDATION');
    assert.equal(e.status, 400);
    assert.ok(e.message.includes(messagePart), `"${e.message}" should contain "${messagePart}"`);
    return true;
  };
}

describe('authority and expiry arithmetic', () => {
  const table: [Cloud, string, string][] = [
    ['global', 'common', 'https://login.microsoftonline.com/common/oauth2/v2.0/'],
    ['global', 'contoso.onmicrosoft.com', 'https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/'],
    ['usgov', 'organizations', 'https://login.microsoftonline.us/organizations/oauth2/v2.0/'],
    ['china', '72f988bf-86f1-41af-91ab-2d7cd011db47', 'https://login.chinacloudapi.cn/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/'],
  ];
  for (const [cloud, tenant, authority] of table) {
    it(`builds ${authority} for ${cloud}/${tenant}`, () => assert.equal(authorityFor(cloud, tenant), authority));
  }

  const days: [string, number][] = [['2026-03-01', 0], ['2026-03-02', 1], ['2026-03-31', 30], ['2026-02-28', -1], ['2027-03-01', 365]];
  for (const [date, left] of days) {
    it(`counts ${left} days from 2026-03-01 15:00 UTC to ${date}`, () => assert.equal(daysUntil(date, NOW), left));
  }
});

for (const dialect of dialects) {
  describe(`settings on ${dialect}`, () => {
    let database: Database;
    let parameters: Parameters;
    let settings: Settings;
    let audit: AuditLog;
    before(async () => {
      database = await freshDatabase(dialect);
    });
    beforeEach(async () => {
      await database.db.deleteFrom('settings').execute();
      await database.db.deleteFrom('parameters').execute();
      audit = new AuditLog(database.db);
      parameters = new Parameters(database.db, audit);
      settings = new Settings(database.db, createVault([randomBytes(32)], 'test'), parameters, audit, () => NOW);
    });
    after(async () => database.close());

    it('starts with everything off, the global common authority, and no redirect URI until web.base.url is set', async () => {
      assert.deepEqual(await settings.get(), {
        customEmailServers: false,
        outlook: {
          enabled: false,
          clientId: null,
          hasClientSecret: false,
          clientSecretExpiresAt: null,
          clientSecretDaysLeft: null,
          clientSecretWarning: null,
          cloud: 'global',
          tenant: 'common',
          authority: 'https://login.microsoftonline.com/common/oauth2/v2.0/',
          redirectUri: null,
        },
        massMailing: { dedicatedServer: false, serverId: null },
      });
      await parameters.set('web.base.url', 'https://mail.example.com/', admin);
      assert.equal((await settings.get()).outlook.redirectUri, 'https://mail.example.com/microsoft_outlook/confirm');
      assert.equal(await settings.outlookCredentials(), null);
    });

    it('round-trips the Outlook credentials, keeping the secret encrypted and out of every answer', async () => {
      const view = await settings.update(
        {
          customEmailServers: true,
          outlook: { enabled: true, clientId: CLIENT_ID, clientSecret: `  ${SECRET}\n`, clientSecretExpiresAt: '2026-03-31', cloud: 'usgov', tenant: 'Contoso.onmicrosoft.com' },
        },
        admin,
      );
      assert.deepEqual(view.outlook, {
        enabled: true,
        clientId: CLIENT_ID.toLowerCase(),
        hasClientSecret: true,
        clientSecretExpiresAt: '2026-03-31',
        clientSecretDaysLeft: 30,
        clientSecretWarning: secretExpiryWarning(30),
        cloud: 'usgov',
        tenant: 'contoso.onmicrosoft.com',
        authority: 'https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/',
        redirectUri: null,
      });
      assert.equal(view.customEmailServers, true);
      assert.deepEqual(await settings.get(), view);
      assert.ok(!JSON.stringify(await settings.get()).includes(SECRET));

      const rows = await database.db.selectFrom('settings').selectAll().execute();
      assert.ok(rows.length > 0);
      assert.ok(!JSON.stringify(rows).includes(SECRET), 'the settings table never holds the secret in clear');
      assert.ok(!JSON.stringify(rows).includes(SECRET.slice(0, 12)), 'nor a recognisable part of it');

      const entry = (await audit.recent(1))[0]!;
      assert.equal(entry.action, 'settings.update');
      assert.deepEqual((JSON.parse(entry.details!) as { changed: string[] }).changed.sort(), [
        'customEmailServers',
        'outlook.clientId',
        'outlook.clientSecret',
        'outlook.clientSecretExpiresAt',
        'outlook.cloud',
        'outlook.enabled',
        'outlook.tenant',
      ]);
      const allAudit = await database.db.selectFrom('audit_log').selectAll().execute();
      assert.ok(!JSON.stringify(allAudit).includes(SECRET), 'the audit log never holds the secret');

      const credentials = await settings.outlookCredentials();
      assert.deepEqual(credentials, {
        enabled: true,
        clientId: CLIENT_ID.toLowerCase(),
        clientSecret: SECRET,
        authority: 'https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/',
        redirectUri: null,
        cloud: 'usgov',
        graphResource: 'https://graph.microsoft.us',
      });
    });

    it('changes only the fields a patch gives, merging nested objects', async () => {
      await settings.update({ customEmailServers: true, outlook: { enabled: true, clientId: CLIENT_ID, clientSecret: SECRET, tenant: 'organizations' } }, admin);
      const view = await settings.update({ outlook: { cloud: 'china' } }, admin);
      assert.equal(view.customEmailServers, true);
      assert.equal(view.outlook.enabled, true);
      assert.equal(view.outlook.clientId, CLIENT_ID.toLowerCase());
      assert.equal(view.outlook.hasClientSecret, true);
      assert.equal(view.outlook.tenant, 'organizations');
      assert.equal(view.outlook.authority, 'https://login.chinacloudapi.cn/organizations/oauth2/v2.0/');
      assert.deepEqual(JSON.parse((await audit.recent(1))[0]!.details!), { changed: ['outlook.cloud'] });
      assert.equal((await settings.outlookCredentials())?.clientSecret, SECRET);
    });

    it('sends through the Graph host of the cloud, unless microsoft_outlook.graph_endpoint overrides it', async () => {
      assert.equal(await settings.graphEndpoint(), 'https://graph.microsoft.com');
      await settings.update({ outlook: { cloud: 'usgov' } }, admin);
      assert.equal(await settings.graphEndpoint(), 'https://graph.microsoft.us');
      await settings.update({ outlook: { cloud: 'china' } }, admin);
      assert.equal(await settings.graphEndpoint(), 'https://microsoftgraph.chinacloudapi.cn');
      await parameters.set('microsoft_outlook.graph_endpoint', 'https://dod-graph.microsoft.us/', admin);
      assert.equal(await settings.graphEndpoint(), 'https://dod-graph.microsoft.us');
      // A DoD tenant's Graph is an audience of its own: tokens are asked for it, not for the cloud's.
      await settings.update({ outlook: { clientId: CLIENT_ID, clientSecret: SECRET, cloud: 'usgov' } }, admin);
      assert.equal((await settings.outlookCredentials())?.graphResource, 'https://dod-graph.microsoft.us');
      await parameters.unset('microsoft_outlook.graph_endpoint', admin);
      assert.equal((await settings.outlookCredentials())?.graphResource, 'https://graph.microsoft.us');
      // Graph tokens go only to Microsoft's Graph hosts (or a loopback test server), and the endpoint has no path.
      await parameters.set('microsoft_outlook.graph_endpoint', 'http://127.0.0.1:4567', admin);
      assert.equal((await settings.outlookCredentials())?.graphResource, 'https://graph.microsoft.us', 'a loopback endpoint keeps the cloud\'s resource');
      await assert.rejects(parameters.set('microsoft_outlook.graph_endpoint', 'http://graph.example.com', admin), /http:\/\/ only on 127\.0\.0\.1/);
      await assert.rejects(parameters.set('microsoft_outlook.graph_endpoint', 'https://graph.example.com', admin), /one of Microsoft Graph's endpoints/);
      await assert.rejects(parameters.set('microsoft_outlook.graph_endpoint', 'https://graph.microsoft.com/v1.0', admin), /without a path such as \/v1\.0.*https:\/\/graph\.microsoft\.com/);
    });

    it('records nothing when a patch changes nothing', async () => {
      await settings.update({ outlook: { tenant: 'organizations' } }, admin);
      const last = (await audit.recent(1))[0]!.id;
      await settings.update({ outlook: { tenant: 'ORGANIZATIONS', cloud: 'global' } }, admin);
      assert.equal((await audit.recent(1))[0]!.id, last);
    });

    for (const clear of ['', null] as const) {
      it(`clears the client secret with ${JSON.stringify(clear)}, and the client id and expiry likewise`, async () => {
        await settings.update({ outlook: { clientId: CLIENT_ID, clientSecret: SECRET, clientSecretExpiresAt: '2027-01-01' } }, admin);
        const view = await settings.update({ outlook: { clientSecret: clear, clientId: clear, clientSecretExpiresAt: clear } }, admin);
        assert.equal(view.outlook.hasClientSecret, false);
        assert.equal(view.outlook.clientId, null);
        assert.equal(view.outlook.clientSecretExpiresAt, null);
        assert.equal(view.outlook.clientSecretDaysLeft, null);
        assert.equal(await settings.outlookCredentials(), null);
        const rows = await database.db.selectFrom('settings').select('key').execute();
        assert.deepEqual(rows, [], 'cleared settings leave no rows behind');
      });
    }

    it('lets the parameter microsoft_outlook.endpoint override the authority, and falls back when it is unset', async () => {
      await settings.update({ outlook: { cloud: 'usgov', tenant: 'consumers', clientId: CLIENT_ID, clientSecret: SECRET } }, admin);
      await parameters.set('microsoft_outlook.endpoint', 'http://127.0.0.1:4567/test-tenant', admin);
      assert.equal((await settings.get()).outlook.authority, 'http://127.0.0.1:4567/test-tenant/');
      assert.equal((await settings.outlookCredentials())?.authority, 'http://127.0.0.1:4567/test-tenant/');
      await parameters.unset('microsoft_outlook.endpoint', admin);
      assert.equal((await settings.get()).outlook.authority, 'https://login.microsoftonline.us/consumers/oauth2/v2.0/');
    });

    /** An outgoing server row (routing needs none of its connection), archived or inactive when asked. */
    const outgoingServer = async (name: string, state: { active?: boolean; archived?: boolean } = {}): Promise<number> => {
      const now = Date.now();
      const row = await database.db
        .insertInto('outgoing_servers')
        .values({ name, host: '127.0.0.1', port: 587, security: 'starttls', auth: 'none', username: null, password_enc: null, from_filter: null, owner_user_id: null, active: state.active === false || state.archived ? 0 : 1, archived_at: state.archived ? now : null, created_at: now, updated_at: now })
        .returning('id')
        .executeTakeFirstOrThrow();
      return row.id;
    };

    it('keeps mass mailing in the parameters, in both directions', async () => {
      const id = await outgoingServer('Bulk');
      const view = await settings.update({ massMailing: { dedicatedServer: true, serverId: id } }, admin);
      assert.deepEqual(view.massMailing, { dedicatedServer: true, serverId: id });
      assert.equal(await parameters.value('mass_mailing.outgoing_mail_server'), 'true');
      assert.equal(await parameters.value('mass_mailing.mail_server_id'), String(id));
      assert.deepEqual(JSON.parse((await audit.recent(1))[0]!.details!), { changed: ['massMailing.dedicatedServer', 'massMailing.serverId'] });

      await parameters.set('mass_mailing.mail_server_id', '9', admin);
      assert.deepEqual((await settings.get()).massMailing, { dedicatedServer: true, serverId: 9 });

      await settings.update({ massMailing: { dedicatedServer: false, serverId: null } }, admin);
      assert.equal(await parameters.value('mass_mailing.outgoing_mail_server'), 'false');
      assert.equal(await parameters.value('mass_mailing.mail_server_id'), undefined);
    });

    it('refuses to turn the dedicated server on, or to choose one, that is archived, inactive or missing, naming it', async () => {
      const archived = await outgoingServer('Old bulk', { archived: true });
      const inactive = await outgoingServer('Paused bulk', { active: false });
      const refusals: [number, string][] = [
        [archived, `massMailing.serverId: "Old bulk" (id ${archived}) is archived: restore it first, or choose another server; mass mailings would wait in the queue.`],
        [inactive, `massMailing.serverId: "Paused bulk" (id ${inactive}) is inactive: make it active first, or choose another server; mass mailings would wait in the queue.`],
        [987654, 'massMailing.serverId: no outgoing mail server has id 987654; mass mailings would wait in the queue.'],
      ];
      for (const [serverId, message] of refusals) {
        await assert.rejects(settings.update({ massMailing: { dedicatedServer: true, serverId } }, admin), validationError(message));
        assert.deepEqual((await settings.get()).massMailing, { dedicatedServer: false, serverId: null });
      }
    });

    it('saves other fields, and the stored mass-mailing values sent back, while the dedicated server is archived or gone', async () => {
      const bulk = await outgoingServer('Bulk');
      await settings.update({ massMailing: { dedicatedServer: true, serverId: bulk } }, admin);
      await database.db.updateTable('outgoing_servers').set({ archived_at: Date.now(), active: 0 }).where('id', '=', bulk).execute();
      const view = await settings.update({ outlook: { clientSecret: 'renewed~secret~0123456789' }, massMailing: { dedicatedServer: true, serverId: bulk } }, admin);
      assert.deepEqual([view.outlook.hasClientSecret, view.massMailing], [true, { dedicatedServer: true, serverId: bulk }]);
      await parameters.set('mass_mailing.mail_server_id', '987654', admin);
      assert.equal((await settings.update({ customEmailServers: true, massMailing: { dedicatedServer: true, serverId: 987654 } }, admin)).customEmailServers, true);
      await parameters.unset('mass_mailing.mail_server_id', admin);
      assert.equal((await settings.update({ customEmailServers: false, massMailing: { dedicatedServer: true, serverId: null } }, admin)).customEmailServers, false, 'on without a server, as stored');
    });

    it('counts Outlook as installed only when outlook.enabled says so: a Client ID alone does not install it', async () => {
      await database.db.insertInto('settings').values({ key: 'outlook.client_id', value: JSON.stringify(CLIENT_ID.toLowerCase()), updated_at: NOW }).execute();
      assert.equal((await settings.get()).outlook.enabled, false, 'no outlook.enabled row: not installed (migration 032 wrote the row for older databases)');
      await settings.update({ outlook: { clientSecret: SECRET } }, admin);
      assert.equal((await settings.outlookCredentials())?.enabled, false);
      await settings.update({ outlook: { enabled: true } }, admin);
      assert.equal((await settings.get()).outlook.enabled, true);
      await settings.update({ outlook: { clientId: '' } }, admin);
      assert.equal((await settings.get()).outlook.enabled, true, 'clearing the Client ID leaves Outlook installed');
    });

    describe('uninstalling Microsoft Outlook while servers use it', () => {
      const now = Date.now();
      const outlookServer = async (table: 'outgoing_servers' | 'incoming_servers', name: string, archived = false) =>
        (await database.db
          .insertInto(table)
          .values({ name, host: '127.0.0.1', port: 587, security: 'starttls', auth: 'outlook', username: `${name.replace(/\W/g, '')}@example.com`, password_enc: null, owner_user_id: null, active: archived ? 0 : 1, archived_at: archived ? now : null, created_at: now, updated_at: now })
          .returning('id')
          .executeTakeFirstOrThrow()).id;
      const inUse = (names: string) => (e: unknown) => {
        assert.ok(e instanceof AppError, String(e));
        assert.equal(e.code, 'JUNIPER_ERR_OUTLOOK_IN_USE');
        assert.equal(e.status, 409);
        assert.equal(e.message, `Microsoft Outlook is still used by ${names}: switch them off Outlook or archive them, then uninstall.`);
        assert.deepEqual(e.details, { field: 'outlook.enabled' });
        return true;
      };
      after(async () => {
        await database.db.deleteFrom('outgoing_servers').where('auth', '=', 'outlook').execute();
        await database.db.deleteFrom('incoming_servers').where('auth', '=', 'outlook').execute();
      });

      it('refuses, naming the outgoing and incoming servers that are not archived, and changes nothing else of the patch', async () => {
        await settings.update({ outlook: { enabled: true, clientId: CLIENT_ID, clientSecret: SECRET } }, admin);
        const sending = await outlookServer('outgoing_servers', 'Notifications');
        const fetching = await outlookServer('incoming_servers', 'Support inbox');
        await outlookServer('outgoing_servers', 'Old notifications', true);
        const last = (await audit.recent(1))[0]!.id;
        await assert.rejects(settings.update({ outlook: { enabled: false } }, admin), inUse('the servers "Notifications", "Support inbox"'));
        await assert.rejects(settings.update({ customEmailServers: true, outlook: { enabled: false, tenant: 'organizations' } }, admin), inUse('the servers "Notifications", "Support inbox"'));
        const view = await settings.get();
        assert.deepEqual([view.outlook.enabled, view.outlook.tenant, view.customEmailServers], [true, 'common', false], 'the whole patch is refused');
        assert.equal((await audit.recent(1))[0]!.id, last, 'nothing is recorded');
        // Keeping it installed, or saving other fields, is never refused.
        assert.equal((await settings.update({ outlook: { enabled: true, tenant: 'organizations' } }, admin)).outlook.tenant, 'organizations');

        await database.db.updateTable('outgoing_servers').set({ auth: 'password' }).where('id', '=', sending).execute();
        await assert.rejects(settings.update({ outlook: { enabled: false } }, admin), inUse('the server "Support inbox"'));
        await database.db.updateTable('incoming_servers').set({ archived_at: now, active: 0 }).where('id', '=', fetching).execute();
        assert.equal((await settings.update({ outlook: { enabled: false } }, admin)).outlook.enabled, false, 'archived servers do not hold it up');
        assert.deepEqual(JSON.parse((await audit.recent(1))[0]!.details!), { changed: ['outlook.enabled'] });
      });

      it('orders an uninstall after a restore in flight: it waits for it, then finds the restored server', async () => {
        await settings.update({ outlook: { enabled: true } }, admin);
        const id = await outlookServer('outgoing_servers', 'Restored meanwhile', true);
        let release!: () => void;
        const held = new Promise<void>((resolve) => (release = resolve));
        let locked!: () => void;
        const hasLock = new Promise<void>((resolve) => (locked = resolve));
        // What MailServers.restore does, held open between its check and its write.
        const restore = database.db.transaction().execute(async (trx) => {
          assert.equal(await outlookInstalledLocked(trx), true);
          locked();
          await held;
          await trx.updateTable('outgoing_servers').set({ archived_at: null, active: 1 }).where('id', '=', id).execute();
        });
        await hasLock;
        let settled = false;
        // Caught at once: it may reject the moment the restore commits, before the assertion below is reached.
        const uninstall = settings.update({ outlook: { enabled: false } }, admin).then(
          () => 'the uninstall went through after the restore',
          (e: unknown) => e,
        ).finally(() => (settled = true));
        try {
          await sleep(300);
          assert.equal(settled, false, 'the uninstall waits for the restore');
        } finally {
          release();
          await restore;
        }
        assert.ok(inUse('the server "Restored meanwhile"')(await uninstall));
        assert.equal((await settings.get()).outlook.enabled, true);
      });

      it('names three servers and counts the rest', async () => {
        await settings.update({ outlook: { enabled: true } }, admin);
        await database.db.updateTable('outgoing_servers').set({ archived_at: now, active: 0 }).where('auth', '=', 'outlook').execute();
        for (const name of ['a', 'b', 'c', 'd', 'e']) await outlookServer('outgoing_servers', `Server ${name}`);
        await assert.rejects(settings.update({ outlook: { enabled: false } }, admin), (e: unknown) => /^Microsoft Outlook is still used by the servers "Server a", "Server b", "Server c" and 2 more: /.test((e as Error).message));
      });
    });

    const invalid: [string, SettingsPatch, string][] = [
      ['a client id that is no GUID', { outlook: { clientId: 'my-app' } }, 'outlook.clientId: must be the Application (client) ID'],
      ['a client id that is no GUID (says GUID)', { outlook: { clientId: 'my-app' } }, 'Azure application ids are GUIDs'],
      ['an unknown tenant form', { outlook: { tenant: 'my tenant' } }, 'outlook.tenant: must be common, organizations, consumers, a tenant id (a GUID) or a verified domain'],
      ['an empty tenant', { outlook: { tenant: '' } }, 'outlook.tenant'],
      ['an impossible date', { outlook: { clientSecretExpiresAt: '2026-02-30' } }, 'outlook.clientSecretExpiresAt: must be a date written YYYY-MM-DD'],
      ['a date in another format', { outlook: { clientSecretExpiresAt: '31/12/2026' } }, 'YYYY-MM-DD'],
      ['an unknown cloud', { outlook: { cloud: 'mars' as Cloud } }, 'outlook.cloud: must be one of global, usgov, china'],
      ['an unknown field', { colour: 'blue' } as SettingsPatch, 'colour'],
      ['an unknown nested field', { outlook: { secret: 'x' } } as SettingsPatch, 'secret'],
      ['a read-only field', { outlook: { authority: 'https://x/' } } as unknown as SettingsPatch, 'microsoft_outlook.endpoint overrides it'],
      ['a dedicated server without a server', { massMailing: { dedicatedServer: true } }, 'massMailing.serverId'],
      ['a server id that is not positive', { massMailing: { serverId: 0 } }, 'massMailing.serverId'],
      ['a multi-line secret', { outlook: { clientSecret: 'a\nb' } }, 'outlook.clientSecret: must not contain line breaks'],
    ];
    for (const [name, patch, messagePart] of invalid) {
      it(`refuses ${name} and changes nothing`, async () => {
        await settings.update({ outlook: { tenant: 'organizations' } }, admin);
        await assert.rejects(settings.update({ customEmailServers: true, ...patch }, admin), validationError(messagePart));
        const view = await settings.get();
        assert.equal(view.customEmailServers, false);
        assert.equal(view.outlook.tenant, 'organizations');
        assert.equal(view.massMailing.dedicatedServer, false);
      });
    }

    it('accepts a tenant id GUID and a domain tenant', async () => {
      const guid = '72F988BF-86F1-41AF-91AB-2D7CD011DB47';
      assert.equal((await settings.update({ outlook: { tenant: guid } }, admin)).outlook.tenant, guid.toLowerCase());
      assert.equal((await settings.update({ outlook: { tenant: 'contoso.com' } }, admin)).outlook.tenant, 'contoso.com');
    });
  });
}
