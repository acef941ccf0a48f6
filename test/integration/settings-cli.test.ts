// `juniper params` and `juniper settings` as an admin runs them: real processes, both databases, the
// client secret piped on stdin and never printed; --outlook off refused while a server uses Outlook, and an
// Outlook server refused (created or restored) while Outlook is off.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { cliEnv, runJuniper, runJuniperAsync } from '../helpers/cli.js';
import { startIdentityServer } from '../peers/identity-server.js';
import { dialects, freshDatabaseConfig } from '../helpers/databases.js';

const SECRET = 'Cli~secret-value-0123456789.abcdefghij';

function juniperIn(dataDir: string, databaseUrl: string | undefined) {
  const env = cliEnv(dataDir, databaseUrl);
  return (args: string[], input = '') => runJuniper(env, args, input);
}

for (const dialect of dialects) {
  describe(`juniper params and settings on ${dialect}`, () => {
    it('sets the Outlook credentials with the secret from stdin, shows hasClientSecret only, and lists parameters with defaults', async () => {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-settings-cli-'));
      const db = await freshDatabaseConfig(dialect);
      const juniper = juniperIn(dataDir, db.kind === 'postgres' ? db.url : undefined);

      const idSet = juniper(['settings', 'set', '--custom-email-servers', 'on', '--outlook', 'on', '--client-id', '1B4F9C5E-0000-4000-8000-123456789ABC', '--secret-expires', '2099-01-31', '--cloud', 'usgov', '--tenant', 'contoso.com']);
      assert.equal(idSet.code, 0, idSet.stderr);
      assert.match(idSet.stdout, /Authority: +https:\/\/login\.microsoftonline\.us\/contoso\.com\/oauth2\/v2\.0\//);
      assert.match(idSet.stdout, /^Credentials check: +skipped \(incomplete\): Not checked with Microsoft: the client secret is not set\./m);

      // The check after a secret is saved asks the authority: the test identity server here, as Entra ID answers.
      const env = cliEnv(dataDir, db.kind === 'postgres' ? db.url : undefined);
      const idp = await startIdentityServer({ apps: [{ clientId: '1b4f9c5e-0000-4000-8000-123456789abc', secret: SECRET, tenants: ['contoso.com'] }] });
      try {
        assert.equal(juniper(['params', 'set', 'microsoft_outlook.endpoint', `${idp.url}/contoso.com/oauth2/v2.0/`]).code, 0);
        const set = await runJuniperAsync(env, ['settings', 'set', '--client-secret-stdin'], `${SECRET}\n`);
        assert.equal(set.code, 0, set.stderr);
        assert.match(set.stdout, /Client secret: +set \(expires 2099-01-31/);
        assert.match(set.stdout, /^Credentials check: +OK: Microsoft accepted the Outlook credentials: the Client ID and the client secret are valid in tenant contoso\.com/m);
        const wrong = await runJuniperAsync(env, ['settings', 'set', '--client-secret-stdin'], `${SECRET}-not-this-one\n`);
        assert.equal(wrong.code, 0, 'the save stands: the check is advice');
        assert.match(wrong.stdout, /^Credentials check: +FAILED \(AADSTS7000215\): Microsoft refused the client secret\. In Settings, paste the client secret's Value, not its Secret ID/m);
        const right = await runJuniperAsync(env, ['settings', 'set', '--client-secret-stdin'], `${SECRET}\n`);
        assert.match(right.stdout, /^Credentials check: +OK/m);
        assert.deepEqual(idp.tokenRequests.map((r) => [r.grantType, r.status, r.tenant]), [['client_credentials', 200, 'contoso.com'], ['client_credentials', 401, 'contoso.com'], ['client_credentials', 200, 'contoso.com']]);
        for (const out of [set.stdout, set.stderr, wrong.stdout, wrong.stderr]) assert.ok(!out.includes(SECRET), 'the secret is never printed');
      } finally {
        await idp.stop();
      }

      const shown = juniper(['settings', 'show', '--json']);
      assert.equal(shown.code, 0, shown.stderr);
      const view = JSON.parse(shown.stdout) as { customEmailServers: boolean; outlook: Record<string, unknown> };
      assert.equal(view.customEmailServers, true);
      assert.equal(view.outlook.clientId, '1b4f9c5e-0000-4000-8000-123456789abc');
      assert.equal(view.outlook.hasClientSecret, true);
      for (const out of [idSet.stdout, idSet.stderr, shown.stdout]) assert.ok(!out.includes(SECRET), 'the secret is never printed');

      const empty = juniper(['settings', 'set', '--client-secret-stdin'], '');
      assert.equal(empty.code, 1);
      assert.match(empty.stderr, /No client secret on stdin; to remove the stored one use --clear-client-secret/);

      const badTenant = juniper(['settings', 'set', '--tenant', 'my tenant']);
      assert.equal(badTenant.code, 1);
      assert.match(badTenant.stderr, /^juniper: Invalid settings: outlook\.tenant: must be common, organizations, consumers/);

      assert.equal(juniper(['params', 'set', 'web.base.url', 'https://mail.example.com/']).stdout, 'web.base.url = https://mail.example.com\n');
      const list = juniper(['params', 'list']);
      assert.equal(list.code, 0, list.stderr);
      assert.match(list.stdout, /^mass_mailing\.outgoing_mail_server\tfalse\t\(default\)$/m);
      assert.match(list.stdout, /^web\.base\.url\thttps:\/\/mail\.example\.com$/m);
      assert.match(juniper(['settings', 'show']).stdout, /Redirect URI: +https:\/\/mail\.example\.com\/microsoft_outlook\/confirm/);

      assert.equal(juniper(['params', 'unset', 'web.base.url']).stdout, 'web.base.url unset.\n');
      const gone = juniper(['params', 'get', 'web.base.url']);
      assert.equal(gone.code, 1);
      assert.match(gone.stderr, /^juniper: The system parameter web\.base\.url is not set and has no default/);
    });

    it('refuses --outlook off while a server uses Outlook, and restoring an archived Outlook server while it is off', async () => {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-settings-cli-'));
      const db = await freshDatabaseConfig(dialect);
      const juniper = juniperIn(dataDir, db.kind === 'postgres' ? db.url : undefined);
      const ok = (args: string[]) => {
        const r = juniper(args);
        assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
        return r.stdout;
      };
      assert.match(ok(['settings', 'show']), /Microsoft Outlook: +disabled/, 'a new database starts with Outlook not installed');
      ok(['settings', 'set', '--outlook', 'on']);
      const id = /^(\d+)\t/.exec(ok(['servers', 'create', '--name', 'Notifications', '--auth', 'outlook', '--username', 'notifications@example.com']))?.[1];
      assert.ok(id, 'the new server id');

      const refused = juniper(['settings', 'set', '--outlook', 'off']);
      assert.equal(refused.code, 1);
      assert.equal(refused.stderr.trim().split('\n').at(-1), 'juniper: Microsoft Outlook is still used by the server "Notifications": switch them off Outlook or archive them, then uninstall.');
      assert.match(ok(['settings', 'show']), /Microsoft Outlook: +enabled/);

      ok(['servers', 'archive', id]);
      assert.match(ok(['settings', 'set', '--outlook', 'off']), /Microsoft Outlook: +disabled/);
      const restore = juniper(['servers', 'restore', id]);
      assert.equal(restore.code, 1);
      assert.match(restore.stderr, /^juniper: The outgoing mail server "Notifications" signs in with Microsoft Outlook, which is not installed: install Microsoft Outlook in Apps .*, then restore it\.$/m);
      assert.match(ok(['servers', 'list', '--archived']), /\tNotifications\t.*\tarchived/);
      // Nor is a new Outlook server created while it is off.
      const created = juniper(['servers', 'create', '--name', 'Later', '--auth', 'outlook', '--username', 'later@example.com']);
      assert.equal(created.code, 1, created.stdout);
      assert.match(created.stderr, /^juniper: Microsoft Outlook is not installed, so the outgoing mail server "Later" cannot sign in with it: install Microsoft Outlook in Apps first .*, or choose another sign-in\.$/m);
      assert.doesNotMatch(ok(['servers', 'list', '--archived']), /\tLater\t/);
      ok(['settings', 'set', '--outlook', 'on']);
      assert.equal(ok(['servers', 'restore', id]), `Restored Notifications (id ${id}); active.\n`);
    });
  });
}
