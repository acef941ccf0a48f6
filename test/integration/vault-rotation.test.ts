// Key rotation as an admin runs it: secrets stored under key A (client secret, server passwords, Outlook
// tokens from the loopback identity server), then `juniper vault rotate` with JUNIPER_SECRET_KEY="B,A" in a
// real process, after which Juniper works with key B alone and key A can be dropped. Both databases.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { cliActor } from '../../src/audit/audit-log.js';
import { cliPrincipal } from '../../src/cli/principal.js';
import { createApp } from '../../src/app.js';
import { createLogger } from '../../src/lib/logger.js';
import { keyIdOf, parseSecretKey } from '../../src/vault/index.js';
import { cliEnv, runJuniper } from '../helpers/cli.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { connectOutlook, signIn } from '../helpers/outlook.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';

const KEY_A = crypto.randomBytes(32).toString('hex');
const KEY_B = crypto.randomBytes(32).toString('hex');
const CLIENT_SECRET = 'rotation-client-secret~0123456789abcdef';
const SMTP_PASSWORD = 'rotation-smtp-password-0123';
const IMAP_PASSWORD = 'rotation-imap-password-4567';

for (const dialect of dialects) {
  describe(`juniper vault rotate (${dialect})`, () => {
    let idp: IdentityServer;
    let t: TestApp;
    let ids: { smtp: number; imap: number; outlook: number };
    let accessToken: string;

    before(async () => {
      idp = await startIdentityServer();
      t = await startTestApp(dialect, { secretKeys: [KEY_A] });
      const { parameters, settings, outgoingServers, incomingServers, tokens } = t.app.services;
      await parameters.set('web.base.url', 'https://juniper.example.com', cliActor);
      await parameters.set('microsoft_outlook.endpoint', `${idp.url}/common/oauth2/v2.0/`, cliActor);
      await settings.update({ customEmailServers: true, outlook: { enabled: true, clientId: '3f2504e0-4f89-41d3-9a0c-0305e82c3301', clientSecret: CLIENT_SECRET } }, cliActor);
      const base = { port: 587, security: 'starttls' as const, fromFilter: null, priority: 10, active: true, allowSelfSigned: false };
      const smtp = await outgoingServers.create({ ...base, name: 'relay', host: 'smtp.example.com', auth: 'password', username: 'relay@example.com', password: SMTP_PASSWORD }, cliPrincipal, cliActor);
      const outlook = await outgoingServers.create({ ...base, name: 'outlook', host: '127.0.0.1', auth: 'outlook', username: 'alice@example.test' }, cliPrincipal, cliActor);
      const imap = await incomingServers.create(
        { name: 'inbox', protocol: 'imap', host: 'imap.example.com', port: 993, security: 'ssl', auth: 'password', username: 'inbox@example.com', password: IMAP_PASSWORD, folder: 'INBOX', keepOriginal: false, keepAttachments: true, priority: 10, intervalMinutes: 5, active: true, allowSelfSigned: false },
        cliPrincipal,
        cliActor,
      );
      const http = await t.app.http();
      const admin = await t.createUser('admin', 'admin');
      assert.equal((await connectOutlook(http, await signIn(http, 'admin', admin.password), 'outgoing', outlook.id)).statusCode, 303);
      accessToken = (await tokens.accessToken('outgoing', outlook.id)).accessToken;
      ids = { smtp: smtp.id, imap: imap.id, outlook: outlook.id };
      await t.app.close();
    });
    after(async () => {
      await idp.stop();
    });

    const env = (keys: string) => ({ ...cliEnv(t.config.dataDir, t.config.database.kind === 'postgres' ? t.config.database.url : `sqlite:${t.config.database.file}`), JUNIPER_SECRET_KEY: keys });
    const idA = keyIdOf(parseSecretKey(KEY_A));
    const idB = keyIdOf(parseSecretKey(KEY_B));

    it('status names the key each secret is under; rotate moves all of them to the newest key; then key B alone works', async () => {
      const before = runJuniper(env(`${KEY_B},${KEY_A}`), ['vault', 'status', '--json']);
      assert.equal(before.code, 0, before.stderr);
      const census = JSON.parse(before.stdout) as { keys: { id: string }[]; sources: { label: string; byKey: Record<string, number> }[]; underOlderKeys: number };
      assert.deepEqual(census.keys.map((k) => k.id), [idB, idA]);
      // client secret, 1 SMTP password, 1 IMAP password, 1 refresh + 1 access token (the PKCE state is used up but kept)
      assert.ok(census.underOlderKeys >= 5, before.stdout);
      const bySource = Object.fromEntries(census.sources.map((s) => [s.label, s.byKey]));
      assert.deepEqual(bySource['settings.outlook.client_secret'], { [idA]: 1 });
      assert.deepEqual(bySource['outgoing_servers.password_enc'], { [idA]: 1 });
      assert.deepEqual(bySource['incoming_servers.password_enc'], { [idA]: 1 });
      assert.deepEqual(bySource['oauth_connections.refresh_token_enc'], { [idA]: 1 });

      const rotated = runJuniper(env(`${KEY_B},${KEY_A}`), ['vault', 'rotate']);
      assert.equal(rotated.code, 0, rotated.stderr);
      assert.match(rotated.stdout, /^settings\.outlook\.client_secret: 1 re-encrypted, 0 already current$/m);
      assert.match(rotated.stdout, new RegExp(`Every secret is under ${idB}: the older key\\(s\\) ${idA} can be removed from JUNIPER_SECRET_KEY\\.`));
      for (const secret of [CLIENT_SECRET, SMTP_PASSWORD, IMAP_PASSWORD, accessToken, KEY_A, KEY_B]) {
        assert.ok(!rotated.stdout.includes(secret) && !rotated.stderr.includes(secret), 'rotation prints no secret or key');
      }
      const again = runJuniper(env(`${KEY_B},${KEY_A}`), ['vault', 'rotate']);
      assert.match(again.stdout, /^settings\.outlook\.client_secret: 0 re-encrypted, 1 already current$/m, 'a second run has nothing to do');

      // Key A removed: every secret still decrypts.
      const app = await createApp({ ...t.config, secretKeys: [KEY_B] }, { logger: createLogger('silent') });
      try {
        const { settings, outgoingServers, incomingServers, tokens } = app.services;
        assert.equal((await settings.outlookCredentials())?.clientSecret, CLIENT_SECRET);
        assert.equal(outgoingServers.password(await outgoingServers.get(ids.smtp)), SMTP_PASSWORD);
        assert.equal(incomingServers.password(await incomingServers.get(ids.imap)), IMAP_PASSWORD);
        assert.equal((await tokens.accessToken('outgoing', ids.outlook)).accessToken, accessToken);
      } finally {
        await app.close();
      }
    });

    it('a secret no configured key can decrypt stops the rotation with the key id it needs, and changes nothing', () => {
      const KEY_C = crypto.randomBytes(32).toString('hex');
      const r = runJuniper(env(KEY_C), ['vault', 'rotate']);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(idB), r.stderr);
      const status = runJuniper(env(KEY_B), ['vault', 'status', '--json']);
      assert.equal((JSON.parse(status.stdout) as { underOlderKeys: number }).underOlderKeys, 0, 'everything is still under B');
    });
  });
}
