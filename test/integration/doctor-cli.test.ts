// `juniper doctor` as an admin runs it, in real processes on both databases: a database that needs migrating,
// an empty one, an Outlook set-up with an unconnected server (the clock compared with the loopback identity
// server), a user's servers on ports the admin has since taken off the allowed list, and a database that cannot be
// reached. The exit code is 1 whenever a line says FAIL.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cliActor } from '../../src/audit/audit-log.js';
import { createApp } from '../../src/app.js';
import { cliPrincipal } from '../../src/cli/principal.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/lib/logger.js';
import { execFile } from 'node:child_process';
import { cliEnv, projectRoot, runJuniper, type CliResult } from '../helpers/cli.js';
import { dialects, freshDatabaseConfig } from '../helpers/databases.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';

const SECRET = 'doctor-client-secret~0123456789abcdef';

/** Like runJuniper, but leaves this process's event loop free: the identity server the doctor asks runs here. */
function runJuniperAsync(env: NodeJS.ProcessEnv, args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['bin/juniper.js', ...args], { cwd: projectRoot, env, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

for (const dialect of dialects) {
  describe(`juniper doctor (${dialect})`, () => {
    let idp: IdentityServer;
    let env: NodeJS.ProcessEnv;
    before(async () => {
      idp = await startIdentityServer();
      const db = await freshDatabaseConfig(dialect);
      env = cliEnv(fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-doctor-')), db.kind === 'postgres' ? db.url : `sqlite:${db.file}`);
    });
    after(() => idp.stop());

    it('an unmigrated database: FAIL migrations, exit 1, and nothing is migrated by the check', () => {
      const r = runJuniper(env, ['doctor']);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stdout, /^FAIL {2}migrations: \d+ migration\(s\) not applied \(001-foundation, .*\): run `juniper migrate`/m);
      assert.match(runJuniper(env, ['doctor']).stdout, /FAIL {2}migrations/, 'still pending: doctor changed nothing');
    });

    it('a migrated, empty set-up: no outgoing server fails; the missing base URL and notifications address warn', () => {
      assert.equal(runJuniper(env, ['migrate']).code, 0);
      const r = runJuniper(env, ['doctor']);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /^ok {4}database: .* is reachable\.$/m);
      assert.match(r.stdout, /^ok {4}migrations: The schema is up to date\.$/m);
      assert.match(r.stdout, /^FAIL {2}outgoing servers: No active outgoing mail server/m);
      assert.match(r.stdout, /^WARN {2}web\.base\.url: web\.base\.url is not set/m);
      assert.match(r.stdout, /^WARN {2}notifications address: /m);
    });

    it('Outlook configured over plain http with an unconnected server: each problem on its own line; --json gives the same findings', async () => {
      const app = await createApp(loadConfig(env), { logger: createLogger('silent') });
      try {
        const { parameters, settings, outgoingServers } = app.services;
        await parameters.set('web.base.url', 'http://mail.example.com', cliActor);
        await parameters.set('microsoft_outlook.endpoint', `${idp.url}/common/oauth2/v2.0/`, cliActor);
        await settings.update({ customEmailServers: true, outlook: { enabled: true, clientId: '3f2504e0-4f89-41d3-9a0c-0305e82c3301', clientSecret: SECRET } }, cliActor);
        await outgoingServers.create({ name: 'Notifications', host: '127.0.0.1', port: 587, security: 'starttls', auth: 'outlook', username: 'notifications@example.com', fromFilter: null, priority: 10, active: true, allowSelfSigned: false }, cliPrincipal, cliActor);
      } finally {
        await app.close();
      }
      const r = await runJuniperAsync(env, ['doctor']);
      assert.equal(r.code, 1);
      assert.match(r.stdout, /^FAIL {2}web\.base\.url: http:\/\/mail\.example\.com is not https/m);
      assert.match(r.stdout, /^ok {4}outlook credentials: Client ID 3f2504e0-4f89-41d3-9a0c-0305e82c3301 and a client secret are set/m);
      assert.match(r.stdout, /^WARN {2}client secret expiry: .*expiry date is not recorded/m);
      assert.match(r.stdout, /^FAIL {2}outgoing server "Notifications" \(id \d+\): Not connected to Outlook: click Connect your Outlook account/m);
      assert.match(r.stdout, new RegExp(`^ok    clock: The clock is within \\d+ s of ${idp.url.replace(/[.]/g, '\\.')}\\.$`, 'm'));
      assert.ok(!r.stdout.includes(SECRET) && !r.stderr.includes(SECRET), 'the client secret is never printed');
      const json = await runJuniperAsync(env, ['doctor', '--json']);
      const findings = JSON.parse(json.stdout) as { level: string; check: string }[];
      assert.equal(json.code, 1);
      assert.deepEqual(findings.filter((f) => f.level === 'fail').map((f) => f.check).sort(), ['outgoing server "Notifications" (id 1)', 'web.base.url']);
    });

    it("a user's servers on ports an admin has since taken off mail.server.allowed_ports: WARN naming each and the command that allows the port; run, the warnings go", async () => {
      const app = await createApp(loadConfig(env), { logger: createLogger('silent') });
      let ids: { outgoing: number; incoming: number; owner: number };
      try {
        const { parameters, users, outgoingServers, incomingServers } = app.services;
        const jane = await users.create({ login: 'jane', email: 'jane@example.com', password: 'jane-password-0123', role: 'user' }, cliActor);
        await parameters.set('mail.server.allowed_private_hosts', '127.0.0.1', cliActor);
        await parameters.set('mail.server.allowed_ports', '587, 993, 2526, 10993', cliActor);
        const owned = { host: '127.0.0.1', auth: 'password' as const, username: 'jane@example.com', password: 'jane-mail-pw-0123', priority: 20, active: true, allowSelfSigned: false, ownerUserId: jane.id };
        const out = await outgoingServers.create({ ...owned, name: 'Jane relay', port: 2526, security: 'starttls', fromFilter: 'jane@example.com' }, cliPrincipal, cliActor);
        const inc = await incomingServers.create({ ...owned, name: 'Jane box', port: 10993, security: 'ssl', protocol: 'imap', folder: 'INBOX', keepOriginal: false, keepAttachments: true, intervalMinutes: 5 }, cliPrincipal, cliActor);
        // The admin narrows the list afterwards: both servers are now refused at every connection.
        await parameters.set('mail.server.allowed_ports', '25, 143, 465, 587, 993, 2525', cliActor);
        ids = { outgoing: out.id, incoming: inc.id, owner: jane.id };
      } finally {
        await app.close();
      }
      const r = await runJuniperAsync(env, ['doctor']);
      const lines = r.stdout.split('\n').filter((l) => l.includes('allowed_ports'));
      const owner = `(it belongs to user id ${ids.owner}, who is not an admin)`;
      assert.deepEqual(lines, [
        `WARN  outgoing server "Jane relay" (id ${ids.outgoing}): Port 2526 is not in mail.server.allowed_ports (25, 143, 465, 587, 993, 2525), the ports of servers of users other than admins ${owner}: every connection to it is refused with JUNIPER_ERR_PORT_NOT_ALLOWED, so its mails wait (failure type port_not_allowed) and are not sent. Change the server's port (to 587 (SMTP submission) or 465 (SMTP over TLS), if its provider offers it), or allow the port: \`juniper params set mail.server.allowed_ports "25, 143, 465, 587, 993, 2525, 2526"\`.`,
        `WARN  incoming server "Jane box" (id ${ids.incoming}): Port 10993 is not in mail.server.allowed_ports (25, 143, 465, 587, 993, 2525), the ports of servers of users other than admins ${owner}: every connection to it is refused with JUNIPER_ERR_PORT_NOT_ALLOWED, so its mailbox is not fetched. Change the server's port (to 993 (IMAP over TLS) or 143 (IMAP), if its provider offers it), or allow the port: \`juniper params set mail.server.allowed_ports "25, 143, 465, 587, 993, 2525, 10993"\`.`,
      ], r.stdout);

      // The command the first line gives, as an admin would paste it.
      const allow = /`juniper (params set mail\.server\.allowed_ports) "([^"]+)"`/.exec(lines[0]!)!;
      assert.equal(runJuniper(env, [...allow[1]!.split(' '), allow[2]!]).code, 0);
      assert.equal(runJuniper(env, ['params', 'set', 'mail.server.allowed_ports', `${allow[2]}, 10993`]).code, 0);
      const again = await runJuniperAsync(env, ['doctor']);
      assert.deepEqual(again.stdout.split('\n').filter((l) => l.includes('allowed_ports')), [], again.stdout);
    });

    it('a database that cannot be reached: FAIL database with what to check, exit 1', () => {
      const unreachable = dialect === 'postgres' ? 'postgres://postgres@127.0.0.1:1/none' : `sqlite:${path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-doctor-')), 'not-a-dir')}/x.sqlite`;
      if (dialect === 'sqlite') fs.writeFileSync(unreachable.slice('sqlite:'.length, -'/x.sqlite'.length), 'a file where the directory should be');
      const r = runJuniper({ ...env, DATABASE_URL: unreachable }, ['doctor']);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /^FAIL {2}database: /m);
    });
  });
}
