import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeImapFailure, imapErrorFacts, toImapFailure, type ImapContext, type ImapStage } from './imap-errors.js';

const ctx: ImapContext = { host: 'imap.example.com', port: 993, security: 'ssl', auth: 'password', user: 'orders@example.com', folder: 'INBOX' };

// Error shapes as imapflow 2.10 and Node report them (captured against Dovecot 2.3).
const authFailed = { message: 'Command failed', authenticationFailed: true, serverResponseCode: 'AUTHENTICATIONFAILED', response: '2 NO [AUTHENTICATIONFAILED] Authentication failed.', responseText: 'Authentication failed.' };
const noFolder = { message: 'Command failed', mailboxMissing: true, responseText: "Mailbox doesn't exist: Orders", response: "A NO Mailbox doesn't exist: Orders" };

describe('IMAP failures in words', () => {
  const cases: [string, unknown, ImapStage, Partial<ImapContext>, ImapStage, RegExp][] = [
    ['wrong password', authFailed, 'connect', {}, 'auth', /Authentication refused for orders@example\.com: "NO \[AUTHENTICATIONFAILED\] Authentication failed\."\. Check the username .* and the password/],
    ['refused token', authFailed, 'connect', { auth: 'outlook' }, 'auth', /did not accept the OAuth2 access token .*Reconnect the Outlook account/],
    ['self-signed', { message: 'self-signed certificate', code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }, 'connect', {}, 'tls', /certificate of imap\.example\.com was not accepted .*allow self-signed/],
    ['SSL on a plain port', { message: 'wrong version number', code: 'ERR_SSL_WRONG_VERSION_NUMBER' }, 'connect', {}, 'tls', /did not answer with TLS.*Choose STARTTLS/],
    ['plain on an SSL port', { message: 'Failed to receive greeting', code: 'GREETING_TIMEOUT' }, 'connect', { security: 'starttls', port: 1993 }, 'tls', /sent no IMAP greeting.*Choose SSL\/TLS/],
    ['nothing listening', { message: 'connect ECONNREFUSED 127.0.0.1:1', code: 'ECONNREFUSED' }, 'connect', {}, 'connect', /Nothing accepts connections at imap\.example\.com:993/],
    ['unknown host', { message: 'getaddrinfo ENOTFOUND imap.example.com', code: 'ENOTFOUND' }, 'connect', {}, 'connect', /could not be resolved/],
    ['firewall', { message: 'Connection timed out', code: 'CONNECT_TIMEOUT' }, 'connect', {}, 'connect', /A firewall may block the port/],
    ['missing folder', noFolder, 'folder', { folder: 'Orders' }, 'folder', /The folder "Orders" could not be opened: "NO Mailbox doesn't exist: Orders"\. Folder names are case-sensitive/],
    ['connection dropped mid-fetch', { message: 'Connection not available', code: 'NoConnection' }, 'fetch', {}, 'fetch', /connection to imap\.example\.com:993 was lost while fetching \(Connection not available\).*next fetch resumes/],
    ['connection reset mid-fetch', { message: 'read ECONNRESET', code: 'ECONNRESET' }, 'fetch', {}, 'fetch', /was lost while fetching/],
    ['reset while connecting', { message: 'read ECONNRESET', code: 'ECONNRESET' }, 'connect', {}, 'connect', /No working connection/],
    ['a SELECT answered with a literal over the limit', { message: 'Literal size 1048576000 exceeds maximum allowed size of 1048576 bytes', code: 'LiteralTooLarge' }, 'folder', {}, 'folder', /^imap\.example\.com:993 sent a response larger than Juniper accepts \(Literal size 1048576000 exceeds .*\), so the connection was closed without reading it\.(?!.*case-sensitive)/],
    ['a FETCH response over the limit', { message: 'Response size 99 exceeds maximum allowed size of 9 bytes', code: 'ResponseTooLarge' }, 'fetch', {}, 'fetch', /sent a response larger than Juniper accepts .*incoming size cap/],
        ['anything else', { message: 'Command failed', responseText: 'Internal error' }, 'fetch', {}, 'fetch', /failed at fetch: "Internal error"/],
  ];
  for (const [name, err, attempted, over, stage, message] of cases) {
    it(`${name} → ${stage}`, () => {
      const d = describeImapFailure(imapErrorFacts(err), attempted, { ...ctx, ...over });
      assert.equal(d.stage, stage);
      assert.match(d.message, message);
    });
  }

  it('an auth failure carries JUNIPER_ERR_IMAP_AUTH and the server reply; others JUNIPER_ERR_IMAP', () => {
    const auth = toImapFailure(authFailed, 'connect', ctx);
    assert.equal(auth.code, 'JUNIPER_ERR_IMAP_AUTH');
    assert.equal(auth.serverReply, 'NO [AUTHENTICATIONFAILED] Authentication failed.');
    assert.equal(toImapFailure(noFolder, 'folder', ctx).code, 'JUNIPER_ERR_IMAP');
    assert.equal(toImapFailure(auth, 'fetch', ctx), auth, 'already described: kept');
  });
});
