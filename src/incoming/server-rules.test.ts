import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyIncomingAuthRules, checkIncomingConnection, createIncomingServerSchema, incomingConnectionDefaults } from './server-rules.js';

describe('incoming server rules', () => {
  it('fills in host, port and security from what was given (Outlook preset; 993 SSL, 143 STARTTLS)', () => {
    const cases: [Parameters<typeof incomingConnectionDefaults>, ReturnType<typeof incomingConnectionDefaults>][] = [
      [['outlook', {}], { host: 'outlook.office365.com', port: 993, security: 'ssl' }],
      [['outlook', { host: '127.0.0.1', port: 1993 }], { host: '127.0.0.1', port: 1993, security: 'ssl' }],
      [['password', { host: 'imap.example.com' }], { host: 'imap.example.com', port: 993, security: 'ssl' }],
      [['password', { host: 'imap.example.com', port: 143 }], { host: 'imap.example.com', port: 143, security: 'starttls' }],
      [['password', { host: 'imap.example.com', security: 'starttls' }], { host: 'imap.example.com', port: 143, security: 'starttls' }],
      [['password', { host: 'imap.example.com', security: 'none' }], { host: 'imap.example.com', port: 143, security: 'none' }],
    ];
    for (const [args, expected] of cases) assert.deepEqual(incomingConnectionDefaults(...args), expected, JSON.stringify(args));
    assert.throws(() => incomingConnectionDefaults('password', {}), /host is required/);
  });

  it('refuses OAuth without TLS and ports that do not speak the chosen security', () => {
    const refused: [Parameters<typeof checkIncomingConnection>, RegExp][] = [
      [['outlook', 143, 'none'], /needs an encrypted connection/],
      [['password', 143, 'ssl'], /Port 143 speaks STARTTLS/],
      [['password', 993, 'starttls'], /Port 993 expects SSL\/TLS/],
    ];
    for (const [args, message] of refused) assert.throws(() => checkIncomingConnection(...args), message, JSON.stringify(args));
    const accepted: Parameters<typeof checkIncomingConnection>[] = [['outlook', 993, 'ssl'], ['outlook', 143, 'starttls'], ['password', 143, 'none'], ['password', 1143, 'ssl']];
    for (const ok of accepted) checkIncomingConnection(...ok);
  });

  it('Outlook: the mailbox address is the username and the password stays empty; password auth needs both', () => {
    assert.deepEqual(applyIncomingAuthRules({ auth: 'outlook', username: 'Orders@Example.COM', password: null, hasStoredPassword: false }), {
      auth: 'outlook',
      username: 'Orders@example.com',
      password: null,
      hasStoredPassword: false,
    });
    assert.throws(() => applyIncomingAuthRules({ auth: 'outlook', username: null, password: null, hasStoredPassword: false }), /mailbox as username/);
    assert.throws(() => applyIncomingAuthRules({ auth: 'outlook', username: 'orders', password: null, hasStoredPassword: false }), /email address/);
    assert.throws(() => applyIncomingAuthRules({ auth: 'outlook', username: 'a@b.com', password: 'pw', hasStoredPassword: false }), /Leave the password empty/);
    assert.throws(() => applyIncomingAuthRules({ auth: 'password', username: 'a', password: null, hasStoredPassword: false }), /needs a password/);
    assert.throws(() => applyIncomingAuthRules({ auth: 'password', username: null, password: 'pw', hasStoredPassword: false }), /needs a username/);
    assert.equal(applyIncomingAuthRules({ auth: 'password', username: 'a', password: undefined, hasStoredPassword: true }).password, undefined, 'keeps the stored password');
  });

  it('validates fields at the edge: defaults, folder names without line breaks, interval bounds, imap only', () => {
    const parsed = createIncomingServerSchema.parse({ name: 'Orders', host: 'imap.example.com', username: 'u', password: 'p' });
    assert.deepEqual([parsed.protocol, parsed.folder, parsed.keepOriginal, parsed.keepAttachments, parsed.intervalMinutes, parsed.auth], ['imap', 'INBOX', false, true, 5, 'password']);
    for (const bad of [{ folder: 'INBOX\r\nA1 LOGOUT' }, { intervalMinutes: 0 }, { protocol: 'pop3' }, { host: 'imap://x' }, { unknown: 1 }]) {
      assert.equal(createIncomingServerSchema.safeParse({ name: 'x', host: 'imap.example.com', ...bad }).success, false, JSON.stringify(bad));
    }
  });
});
