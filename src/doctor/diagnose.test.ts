import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { IncomingServerView } from '../incoming/servers.js';
import type { OutgoingServerView } from '../outgoing/servers.js';
import type { SettingsView } from '../settings/settings.js';
import { DEFAULT_ALLOWED_PORTS, parsePortList } from '../mail-servers/port-policy.js';
import { diagnose, exitCodeOf, type DoctorFacts } from './diagnose.js';

const settings = (outlook: Partial<SettingsView['outlook']> = {}): SettingsView => ({
  customEmailServers: true,
  outlook: {
    enabled: true,
    clientId: '3f2504e0-4f89-41d3-9a0c-0305e82c3301',
    hasClientSecret: true,
    clientSecretExpiresAt: '2099-01-01',
    clientSecretDaysLeft: 400,
    clientSecretWarning: null,
    cloud: 'global',
    tenant: 'common',
    authority: 'https://login.microsoftonline.com/common/oauth2/v2.0/',
    redirectUri: 'https://mail.example.com/microsoft_outlook/confirm',
    ...outlook,
  },
  massMailing: { dedicatedServer: false, serverId: null },
});

const token = (status: OutgoingServerView['token']['status'], extra: Partial<OutgoingServerView['token']> = {}): OutgoingServerView['token'] => ({ status, account: null, expiresAt: null, error: null, appProblem: null, ...extra });
const tested = { at: '2026-12-01T10:00:00.000Z', ok: true, message: 'Connection test succeeded' };

const outgoing = (o: Partial<OutgoingServerView> = {}): OutgoingServerView => ({
  id: 1, name: 'Outlook', host: 'smtp.office365.com', port: 587, security: 'starttls', auth: 'outlook', username: 'n@example.com', hasPassword: false,
  fromFilter: 'n@example.com', priority: 10, active: true, archived: false, allowSelfSigned: false, ownerUserId: null, token: token('valid'), lastTest: tested,
  poolSize: null, effectivePoolSize: 2, ratePerMinute: null, effectiveRatePerMinute: 30, transport: 'auto', activeTransport: 'smtp', transportSwitch: null, saveToSentItems: true, createdAt: '', updatedAt: '', ...o,
});
const incoming = (o: Partial<IncomingServerView> = {}): IncomingServerView => ({
  ...(outgoing() as unknown as IncomingServerView), id: 2, name: 'Inbox', protocol: 'imap', folder: 'INBOX', keepOriginal: false, keepAttachments: true, intervalMinutes: 5,
  state: 'confirmed', lastFetchAt: null, lastError: null, errorSince: null, ...o,
});

const healthy = (o: Partial<DoctorFacts> = {}): DoctorFacts => ({
  database: 'SQLite ./data/juniper.sqlite', pendingMigrations: [], baseUrl: 'https://mail.example.com', envBaseUrl: null, settings: settings(), notificationsAddress: 'notifications@example.com',
  outgoing: [outgoing()], incoming: [incoming()], clockSkewMs: 300, clockSource: 'https://login.microsoftonline.com', clockError: null,
  vault: { keySource: '/data/vault.key (key id 11111111)', configured: ['11111111'], noKeyYet: false, stored: 3, unreadable: [] },
  portPolicy: { allowed: parsePortList(DEFAULT_ALLOWED_PORTS), held: { outgoing: [], incoming: [] } }, ...o,
});
const lostKey: DoctorFacts['vault'] = {
  keySource: '/data/vault.key (key id 11111111)', configured: ['11111111'], noKeyYet: false, stored: 2,
  unreadable: [{ label: 'settings.outlook.client_secret', name: 'Outlook client secret (Settings → Outlook Credentials)', keyId: '26ce1702', reason: 'key 26ce1702 is not configured' }],
};

/** Mass mailings set to go through the dedicated server `serverId`. */
const mass = (serverId: number | null): Partial<DoctorFacts> => ({ settings: { ...settings(), massMailing: { dedicatedServer: true, serverId } } });

const problems = (f: DoctorFacts) => diagnose(f).filter((x) => x.level !== 'ok').map((x) => `${x.level} ${x.check}: ${x.message}`);

describe('juniper doctor: diagnose', () => {
  it('a healthy Outlook set-up has no warnings and exits 0', () => {
    assert.deepEqual(problems(healthy()), []);
    assert.equal(exitCodeOf(diagnose(healthy())), 0);
    assert.ok(diagnose(healthy()).some((x) => x.check === 'redirect uri' && x.message.includes('https://mail.example.com/microsoft_outlook/confirm')));
  });

  const cases: [string, Partial<DoctorFacts>, RegExp, 'warn' | 'fail'][] = [
    ['pending migrations', { pendingMigrations: ['005-x'] }, /fail migrations: 1 migration\(s\) not applied \(005-x\): run `juniper migrate`/, 'fail'],
    ['no base URL with Outlook', { baseUrl: null }, /fail web\.base\.url: web\.base\.url is not set/, 'fail'],
    ['http base URL with Outlook', { baseUrl: 'http://mail.example.com' }, /fail web\.base\.url: http:\/\/mail\.example\.com is not https/, 'fail'],
    ['a base URL that is no URL', { baseUrl: 'mail.example.com' }, /fail web\.base\.url: mail\.example\.com is not a URL/, 'fail'],
    ['JUNIPER_BASE_URL overridden by the parameter', { envBaseUrl: 'https://juniper.example.com' }, /warn JUNIPER_BASE_URL: JUNIPER_BASE_URL is https:\/\/juniper\.example\.com but the system parameter web\.base\.url is https:\/\/mail\.example\.com, and the parameter wins .*juniper params set web\.base\.url https:\/\/juniper\.example\.com/, 'warn'],
    ['http://localhost only warns', { baseUrl: 'http://localhost:8080' }, /warn web\.base\.url: http:\/\/localhost:8080 is plain http/, 'warn'],
    ['missing client secret', { settings: settings({ hasClientSecret: false }) }, /fail outlook credentials: The Outlook Client Secret is not set/, 'fail'],
    ['missing id and secret', { settings: settings({ clientId: null, hasClientSecret: false }) }, /The Outlook Client ID and Client Secret are not set/, 'fail'],
    ['no expiry date', { settings: settings({ clientSecretExpiresAt: null, clientSecretDaysLeft: null }) }, /warn client secret expiry: .*expiry date is not recorded/, 'warn'],
    ['secret expiring in 20 days', { settings: settings({ clientSecretDaysLeft: 20, clientSecretWarning: { level: 'notice', message: 'expires in 20 day(s)' } }) }, /warn client secret expiry: expires in 20/, 'warn'],
    ['secret expired', { settings: settings({ clientSecretDaysLeft: -2, clientSecretWarning: { level: 'critical', message: 'expired 2 day(s) ago' } }) }, /fail client secret expiry: expired 2/, 'fail'],
    ['not connected', { outgoing: [outgoing({ token: token('missing') })] }, /fail outgoing server "Outlook" \(id 1\): Not connected to Outlook: click Connect your Outlook account/, 'fail'],
    ['needs reconnect', { outgoing: [outgoing({ token: token('needs_reconnect', { error: { code: 'AADSTS700082', message: 'the refresh token expired' } }) })] }, /must be reconnected: the refresh token expired/, 'fail'],
    ['app problem', { outgoing: [outgoing({ token: token('valid', { appProblem: { code: 'AADSTS7000222', message: 'the client secret expired' } }) })] }, /fail outgoing server .*Outlook app problem: the client secret expired/, 'fail'],
    ['app problem on the credentials line', { appProblem: { code: 'AADSTS7000215', message: 'Microsoft refused the client secret.', since: '2026-12-04T10:00:00.000Z' } }, /fail outlook credentials: Microsoft refused the Outlook app's credentials \(AADSTS7000215\).*every Outlook server: Microsoft refused the client secret/, 'fail'],
    ['never tested', { outgoing: [outgoing({ lastTest: null })] }, /warn outgoing server "Outlook" \(id 1\): Never tested: click Test Connection/, 'warn'],
    ['failed test', { outgoing: [outgoing({ lastTest: { ...tested, ok: false, message: '535 5.7.139 SMTP AUTH is disabled' } })] }, /fail outgoing server .*failed: 535 5\.7\.139/, 'fail'],
    ['no outgoing server', { outgoing: [outgoing({ archived: true, active: false })] }, /fail outgoing servers: No active outgoing mail server/, 'fail'],
    ['no notifications address', { notificationsAddress: null }, /warn notifications address/, 'warn'],
    ['draft incoming', { incoming: [incoming({ state: 'draft' })] }, /warn incoming server "Inbox" \(id 2\): It is a draft and is not fetched: click Test and Confirm/, 'warn'],
    ['failing fetch', { incoming: [incoming({ lastError: 'IMAP login refused', errorSince: '2026-12-01T09:00:00.000Z' })] }, /fail incoming server .*last fetch failed \(failing since 2026-12-01T09:00:00\.000Z\): IMAP login refused/, 'fail'],
    ['dedicated mass-mailing server archived', { ...mass(3), outgoing: [outgoing(), outgoing({ id: 3, name: 'Bulk', archived: true, active: false })] }, /^fail mass mailing: Mass mailings go through the dedicated server "Bulk" \(id 3\), but it is archived: restore it/, 'fail'],
    ['dedicated mass-mailing server gone', { ...mass(9) }, /^fail mass mailing: .*dedicated server id 9 .*but no outgoing mail server has id 9/, 'fail'],
    ['dedicated mass-mailing server inactive', { ...mass(3), outgoing: [outgoing(), outgoing({ id: 3, name: 'Bulk', active: false })] }, /^warn mass mailing: .*"Bulk" \(id 3\), but it is inactive: make it active again/, 'warn'],
    ['dedicated mass mailing on without a server', { ...mass(null) }, /^warn mass mailing: .*no server is chosen/, 'warn'],
    ['clock ahead', { clockSkewMs: 10 * 60_000 }, /fail clock: This machine's clock is 600 s ahead of/, 'fail'],
    ['a secret under a key that is not configured', { vault: lostKey }, /fail vault key: 1 of 2 stored secret\(s\) cannot be decrypted: Outlook client secret .*key 26ce1702 is not configured.*juniper vault forget --key-id 26ce1702/, 'fail'],
    ['an undecryptable client secret is no usable credential', { vault: lostKey }, /fail outlook credentials: A client secret is stored but cannot be decrypted/, 'fail'],
    ['clock unknown', { clockSkewMs: null, clockError: 'no answer within 5 s' }, /warn clock: Could not compare the clock with .*no answer within 5 s/, 'warn'],
  ];
  for (const [name, facts, expected, level] of cases) {
    it(`${name} → ${level}`, () => {
      const found = problems(healthy(facts));
      assert.ok(found.some((line) => expected.test(line)), found.join('\n'));
      assert.equal(exitCodeOf(diagnose(healthy(facts))), level === 'fail' ? 1 : 0);
    });
  }

  it('a usable dedicated mass-mailing server is an ok line', () => {
    const found = diagnose(healthy({ ...mass(1) })).find((x) => x.check === 'mass mailing');
    assert.deepEqual(found, { level: 'ok', check: 'mass mailing', message: 'Mass mailings go through the dedicated server "Outlook" (id 1).' });
  });

  it('a set-up without Outlook is not asked for Outlook credentials or an https base URL', () => {
    const plain = healthy({ settings: settings({ enabled: false, clientId: null, hasClientSecret: false }), baseUrl: null, outgoing: [outgoing({ auth: 'password', token: token('missing') })], incoming: [] });
    const found = problems(plain);
    assert.deepEqual(found.filter((l) => l.startsWith('fail')), []);
    assert.ok(!found.some((l) => /outlook credentials/.test(l)));
  });

  it("warns about a user's server on a port off mail.server.allowed_ports, naming it and what to do; an admin's or an allowed port is not", () => {
    const users = { outgoing: [outgoing({ id: 5, name: 'Jane relay', auth: 'password', token: token('missing'), port: 2526, ownerUserId: 4 })], incoming: [incoming({ id: 6, name: 'Jane box', auth: 'password', token: token('missing'), port: 10993, ownerUserId: 4 })] };
    const held = { allowed: parsePortList(DEFAULT_ALLOWED_PORTS), held: { outgoing: [5], incoming: [6] } };
    const found = problems(healthy({ ...users, portPolicy: held }));
    assert.deepEqual(found.filter((l) => l.includes('allowed_ports')), [
      'warn outgoing server "Jane relay" (id 5): Port 2526 is not in mail.server.allowed_ports (25, 143, 465, 587, 993, 2525), the ports of servers of users other than admins (it belongs to user id 4, who is not an admin): every connection to it is refused with JUNIPER_ERR_PORT_NOT_ALLOWED, so its mails wait (failure type port_not_allowed) and are not sent. Change the server\'s port (to 587 (SMTP submission) or 465 (SMTP over TLS), if its provider offers it), or allow the port: `juniper params set mail.server.allowed_ports "25, 143, 465, 587, 993, 2525, 2526"`.',
      'warn incoming server "Jane box" (id 6): Port 10993 is not in mail.server.allowed_ports (25, 143, 465, 587, 993, 2525), the ports of servers of users other than admins (it belongs to user id 4, who is not an admin): every connection to it is refused with JUNIPER_ERR_PORT_NOT_ALLOWED, so its mailbox is not fetched. Change the server\'s port (to 993 (IMAP over TLS) or 143 (IMAP), if its provider offers it), or allow the port: `juniper params set mail.server.allowed_ports "25, 143, 465, 587, 993, 2525, 10993"`.',
    ]);
    assert.equal(exitCodeOf(diagnose(healthy({ ...users, portPolicy: held }))), 0, 'a warning');
    // Not held (an admin's, or a shared server): any port. Held on an allowed port, or the port allowed: nothing.
    assert.ok(!problems(healthy({ ...users })).some((l) => l.includes('allowed_ports')));
    assert.ok(!problems(healthy({ ...users, portPolicy: { ...held, allowed: parsePortList('25, 143, 465, 587, 993, 2525-2526, 10993') } })).some((l) => l.includes('allowed_ports')));
    // Archived or inactive servers are not connected to: not warned either.
    const idle = { outgoing: [{ ...users.outgoing[0]!, archived: true, active: false }], incoming: [{ ...users.incoming[0]!, active: false }] };
    assert.ok(!problems(healthy({ ...idle, portPolicy: held })).some((l) => l.includes('allowed_ports')));
  });
});
