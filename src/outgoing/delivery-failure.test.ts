import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppError } from '../lib/errors.js';
import { oauthFailure } from '../oauth/oauth-errors.js';
import { classifySendError, crashedReason, crashedReasonParts, enhancedStatus } from './delivery-failure.js';
import { deadlineExceeded } from './send-deadline.js';
import { tokenUnavailable } from './smtp-transport.js';
import type { ClassifyContext, DeliveryAction, FailureType } from './delivery-failure.js';

/** An error shaped as nodemailer's SMTPConnection._formatError makes it for a server reply. */
function replyError(code: string, command: string, response: string, text = 'Message failed'): Error {
  const responseCode = Number(/^\d+/.exec(response)?.[0]);
  return Object.assign(new Error(`${text}: ${response}`), {
    code,
    command,
    response,
    responseCode,
    permanent: responseCode >= 500 && responseCode !== 503,
  });
}

/** A socket, DNS or timeout error as nodemailer reports it (its code over the system's originalCode). */
function socketError(code: string, originalCode: string | undefined, message: string, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(message), { code, command: 'CONN', ...(originalCode ? { originalCode } : {}), ...extra });
}

const ENDPOINT = { host: 'smtp.example.com', port: 2525 };
const outlook: ClassifyContext = { auth: 'outlook', endpoint: ENDPOINT };
const password: ClassifyContext = { auth: 'password', endpoint: ENDPOINT };
const none: ClassifyContext = { auth: 'none', endpoint: ENDPOINT };

interface Case {
  name: string;
  err: unknown;
  context?: ClassifyContext;
  action: DeliveryAction;
  failureType: FailureType;
  /** Words the reason must contain (besides the server's reply, checked for every SMTP error). */
  says?: RegExp[];
  /** Words the reason must not contain (advice that would send the admin the wrong way). */
  saysNot?: RegExp[];
}

const MS_AUTH_DISABLED =
  '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [MN2PR05CA0004.namprd05.prod.outlook.com 2023-09-12T20:59:57.214Z 08DBB276B7E699C4]';
const MS_BASIC_DISABLED = '535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [BM1P287CA0015.INDP287.PROD.OUTLOOK.COM]';
const MS_BAD_TOKEN = '535 5.7.3 Authentication unsuccessful [SGXP274CA0016.SGPP274.PROD.OUTLOOK.COM 2025-03-20T11:25:21.972Z 08DD66EDEFB0DFDF]';
const MS_SEND_AS =
  '554 5.2.252 SendAsDenied; alice@contoso.com not allowed to send as bob@contoso.com; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception with message [BeginDiagnosticData]Cannot submit message. 0.35250:0E00C187, 1.36674:0A000000 [Hostname=AM6PR04MB5959.eurprd04.prod.outlook.com]';
const MS_QUOTA =
  '554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception with message [BeginDiagnosticData]Cannot submit message. [Hostname=DB8PR04MB6827.eurprd04.prod.outlook.com]';

const cases: Case[] = [
  // Temporary SMTP replies: the same mail later.
  { name: '451 at DATA', err: replyError('EMESSAGE', 'DATA', '451 4.3.0 Temporary server error. Please try again later'), action: 'retry', failureType: 'smtp_temporary' },
  { name: '450 mailbox busy at RCPT TO (all recipients)', err: replyError('EENVELOPE', 'RCPT TO', '450 4.2.1 Mailbox busy, try again later', "Can't send mail - all recipients were rejected"), action: 'retry', failureType: 'smtp_temporary' },
  { name: '421 server closing', err: replyError('ECONNECTION', 'CONN', '421 4.3.2 Service not available, closing transmission channel', 'Server closed the connection'), action: 'retry', failureType: 'smtp_temporary' },
  { name: 'Microsoft 432 sender thread limit', err: replyError('EMESSAGE', 'DATA', '432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded [Hostname=DB8PR04MB6827]'), action: 'retry', failureType: 'quota' },
  { name: '454 temporary authentication failure', err: replyError('EAUTH', 'AUTH PLAIN', '454 4.7.0 Temporary authentication failure', 'Invalid login'), context: password, action: 'retry', failureType: 'smtp_temporary' },
  { name: '503 bad sequence of commands', err: replyError('EENVELOPE', 'MAIL FROM', '503 5.5.1 Error: nested MAIL command', 'Mail command failed'), action: 'retry', failureType: 'smtp_temporary' },
  { name: 'Microsoft 554 5.2.0 submission quota (a 5xx that lifts within a day)', err: replyError('EMESSAGE', 'DATA', MS_QUOTA), action: 'retry', failureType: 'quota', says: [/limit/] },

  // Permanent refusals: the mail fails with the server's words.
  { name: 'every recipient unknown (Microsoft 5.1.10)', err: replyError('EENVELOPE', 'RCPT TO', '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup', "Can't send mail - all recipients were rejected"), action: 'fail', failureType: 'invalid_address' },
  { name: 'recipient address syntax 553', err: replyError('EENVELOPE', 'RCPT TO', '553 5.1.3 The recipient address <bob@@example.com> is not a valid RFC-5321 address'), action: 'fail', failureType: 'invalid_address' },
  { name: 'relay denied at RCPT TO', err: replyError('EENVELOPE', 'RCPT TO', '550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain'), action: 'fail', failureType: 'rejected' },
  { name: 'mailbox full 552 5.2.2 is no size problem of ours', err: replyError('EENVELOPE', 'RCPT TO', '552 5.2.2 Mailbox full'), action: 'fail', failureType: 'rejected' },
  { name: 'sender refused at MAIL FROM (Microsoft 5.7.60)', err: replyError('EENVELOPE', 'MAIL FROM', '550 5.7.60 SMTP; Client does not have permissions to send as this sender', 'Mail command failed'), action: 'fail', failureType: 'sender_refused', says: [/From filter/, /Send As/] },
  { name: 'Microsoft SendAsDenied at the end of DATA', err: replyError('EMESSAGE', 'DATA', MS_SEND_AS), action: 'fail', failureType: 'sender_refused' },
  { name: 'message too large 552 5.3.4', err: replyError('EMESSAGE', 'DATA', '552 5.3.4 Message size exceeds fixed maximum message size'), action: 'fail', failureType: 'too_large' },
  { name: 'too large before sending (SIZE announced by the server)', err: Object.assign(new Error('Message size larger than allowed 36700160'), { code: 'EMESSAGE', command: 'MAIL FROM' }), action: 'fail', failureType: 'too_large' },
  { name: 'content refused 554 5.6.0', err: replyError('EMESSAGE', 'DATA', '554 5.6.0 Corrupt message content'), action: 'fail', failureType: 'rejected' },
  { name: 'IP blocked by Microsoft 5.7.708', err: replyError('EMESSAGE', 'DATA', '550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.'), action: 'fail', failureType: 'rejected' },
  { name: 'command not understood 500', err: replyError('EMESSAGE', 'DATA', '500 5.5.1 Command unrecognized'), action: 'fail', failureType: 'protocol' },
  { name: 'invalid envelope before sending', err: Object.assign(new Error('Invalid recipient "bob@example.com>"'), { code: 'EENVELOPE', command: 'API' }), action: 'fail', failureType: 'invalid_address' },

  // Authentication: mails wait for an admin, they are never lost.
  { name: '535 5.7.139 SMTP AUTH disabled for the tenant (Outlook)', err: replyError('EAUTH', 'AUTH XOAUTH2', MS_AUTH_DISABLED, 'Invalid login'), context: outlook, action: 'wait', failureType: 'smtp_auth_disabled', says: [/Manage email apps/, /Authenticated SMTP/, /Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled \$false/, /Security defaults/, /Transport to Automatic or Microsoft Graph/] },
  { name: '535 5.7.139 SMTP AUTH disabled (password)', err: replyError('EAUTH', 'AUTH LOGIN', MS_AUTH_DISABLED, 'Invalid login'), context: password, action: 'wait', failureType: 'smtp_auth_disabled', says: [/Set-CASMailbox/] },
  { name: '535 5.7.139 basic authentication disabled', err: replyError('EAUTH', 'AUTH LOGIN', MS_BASIC_DISABLED, 'Invalid login'), context: password, action: 'wait', failureType: 'smtp_auth_disabled', says: [/Outlook \(OAuth2\)/] },
  { name: 'Microsoft refuses the token: 535 5.7.3', err: replyError('EAUTH', 'AUTH XOAUTH2', MS_BAD_TOKEN, 'Invalid login'), context: outlook, action: 'wait', failureType: 'auth', says: [/reconnect the Outlook account/] },
  { name: 'wrong password 535 5.7.8', err: replyError('EAUTH', 'AUTH PLAIN', '535 5.7.8 Authentication unsuccessful', 'Invalid login'), context: password, action: 'wait', failureType: 'auth', says: [/username/, /password/] },
  { name: 'authentication required but none configured (530 5.7.57)', err: replyError('EENVELOPE', 'MAIL FROM', '530 5.7.57 Client not authenticated to send mail. [AM0PR02CA0001.eurprd02.prod.outlook.com]', 'Mail command failed'), context: none, action: 'wait', failureType: 'auth', says: [/requires authentication/] },
  { name: 'STARTTLS required before MAIL FROM (530 5.7.0)', err: replyError('EENVELOPE', 'MAIL FROM', '530 5.7.0 Must issue a STARTTLS command first'), context: none, action: 'wait', failureType: 'tls', says: [/STARTTLS/] },
  { name: 'AUTH before encryption refused (538)', err: replyError('EAUTH', 'AUTH XOAUTH2', '538 5.7.11 Encryption required for requested authentication mechanism', 'Invalid login'), context: outlook, action: 'wait', failureType: 'auth', says: [/STARTTLS/] },
  { name: 'missing credentials', err: Object.assign(new Error('Missing credentials for "PLAIN"'), { code: 'EAUTH', command: 'API' }), context: password, action: 'wait', failureType: 'auth' },
  { name: 'no credentials given', err: Object.assign(new Error('Authentication info was not provided'), { code: 'ENOAUTH' }), context: none, action: 'wait', failureType: 'auth' },

  // OAuth tokens.
  { name: 'token source unreachable (transient)', err: new AppError('JUNIPER_ERR_OAUTH_TOKEN_UNAVAILABLE', 'No OAuth2 access token could be obtained: fetch failed.', { details: { transient: true } }), context: outlook, action: 'retry', failureType: 'oauth_transient' },
  { name: 'token source needs a reconnect', err: new AppError('JUNIPER_ERR_OAUTH_TOKEN_UNAVAILABLE', 'No OAuth2 access token could be obtained: invalid_grant.', { details: { transient: false } }), context: outlook, action: 'wait', failureType: 'oauth_token', says: [/reconnected/] },
  { name: 'wrong client secret (AADSTS7000215) sends the admin to Settings, not to a reconnect', err: tokenUnavailable(oauthFailure({ httpStatus: 401, oauthError: 'invalid_client', aadsts: 7000215, description: 'Invalid client secret provided.' })), context: outlook, action: 'wait', failureType: 'oauth_app', says: [/AADSTS7000215/, /refused the client secret/, /Settings → Outlook Credentials/, /reconnecting does not help/], saysNot: [/reconnected on the server form/] },
  { name: 'expired client secret (AADSTS7000222) names the expiry and Settings', err: tokenUnavailable(oauthFailure({ httpStatus: 401, oauthError: 'invalid_client', aadsts: 7000222 })), context: outlook, action: 'wait', failureType: 'oauth_app', says: [/AADSTS7000222/, /expired/, /Settings/], saysNot: [/reconnected on the server form/] },
  { name: 'no Outlook credentials set', err: tokenUnavailable(new AppError('JUNIPER_ERR_OUTLOOK_CREDENTIALS')), context: outlook, action: 'wait', failureType: 'oauth_app', says: [/Client ID or Client Secret is not set/, /Settings/] },
  { name: 'a server-level refusal (AADSTS700082) still asks for a reconnect', err: tokenUnavailable(oauthFailure({ httpStatus: 400, oauthError: 'invalid_grant', aadsts: 700082 })), context: outlook, action: 'wait', failureType: 'oauth_token', says: [/reconnected/] },
  { name: "nodemailer's own token error", err: Object.assign(new Error("Can't create new access token for user"), { code: 'EOAUTH2' }), context: outlook, action: 'wait', failureType: 'oauth_token' },

  // Reaching the server: retried.
  { name: 'connection refused', err: socketError('ESOCKET', 'ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:2525'), action: 'retry', failureType: 'connection', says: [/Nothing listens on smtp\.example\.com:2525/, /587 for STARTTLS, 465 for SSL/] },
  { name: 'connection reset', err: socketError('ESOCKET', 'ECONNRESET', 'read ECONNRESET'), action: 'retry', failureType: 'connection' },
  { name: 'connection closed unexpectedly', err: socketError('ECONNECTION', undefined, 'Connection closed unexpectedly'), action: 'retry', failureType: 'connection' },
  { name: 'host not found', err: socketError('EDNS', 'ENOTFOUND', 'getaddrinfo ENOTFOUND smtp.exmaple.com'), action: 'retry', failureType: 'dns', says: [/does not exist/] },
  { name: 'DNS temporarily failing', err: socketError('EDNS', 'EAI_AGAIN', 'getaddrinfo EAI_AGAIN smtp.example.com'), action: 'retry', failureType: 'dns', says: [/right now/] },
  { name: 'self-signed certificate', err: socketError('ESOCKET', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'self-signed certificate'), action: 'retry', failureType: 'tls', says: [/Allow self-signed/, /private servers/] },
  { name: 'SSL on a STARTTLS port', err: socketError('ESOCKET', 'ERR_SSL_WRONG_VERSION_NUMBER', '80BCC21B727F0000:error:0A00010B:SSL routines:ssl3_get_record:wrong version number'), action: 'retry', failureType: 'tls', says: [/STARTTLS/, /465/] },
  { name: 'certificate for another name', err: socketError('ESOCKET', 'ERR_TLS_CERT_ALTNAME_INVALID', "Hostname/IP does not match certificate's altnames: Host: smtp.example.com. is not in the cert's altnames: DNS:mail.example.net"), action: 'retry', failureType: 'tls' },
  { name: 'STARTTLS not supported (5xx reply to STARTTLS)', err: replyError('ETLS', 'STARTTLS', '502 5.5.1 Unrecognized command', 'Error upgrading connection with STARTTLS'), action: 'retry', failureType: 'tls', says: [/STARTTLS/] },
  { name: 'no greeting (STARTTLS on an SSL port)', err: socketError('ETIMEDOUT', undefined, 'Greeting never received', { timeoutType: 'GREETING_TIMEOUT' }), action: 'retry', failureType: 'timeout', says: [/choose SSL/] },
  { name: 'connect timeout', err: socketError('ETIMEDOUT', undefined, 'Connection timeout', { timeoutType: 'CONNECT_TIMEOUT' }), action: 'retry', failureType: 'timeout', says: [/firewall/] },
  { name: 'idle socket timeout', err: socketError('ETIMEDOUT', undefined, 'Timeout', { timeoutType: 'SOCKET_TIMEOUT' }), action: 'retry', failureType: 'timeout' },
  { name: 'not an SMTP server', err: Object.assign(new Error('Invalid greeting. response=HTTP/1.1 400 Bad Request'), { code: 'EPROTOCOL', command: 'CONN' }), action: 'retry', failureType: 'connection' },

  // The address policy refused the host (a user's server at a private address): an admin must decide, retrying cannot help.
  { name: 'a send stopped at its deadline mid-session', err: deadlineExceeded('mine', 'smtp.example.com:2525', 120_000, 'session'), action: 'retry', failureType: 'timeout', says: [/"mine" \(smtp\.example\.com:2525\) did not finish sending the mail within 120 s/, /stopped answering mid-session/, /Juniper retries later/] },
  { name: 'a send stopped at its deadline after the whole message was written', err: deadlineExceeded('mine', 'smtp.example.com:2525', 300_000, 'written'), action: 'retry', failureType: 'timeout', says: [/within 300 s/, /may arrive twice/] },
  { name: 'host refused by the address policy', err: new AppError('JUNIPER_ERR_HOST_NOT_ALLOWED', 'Outgoing server "mine" (id 3): smtp.example.com resolves to 10.0.0.5, a private address; an admin may allow it with the system parameter mail.server.allowed_private_hosts.'), action: 'wait', failureType: 'host_not_allowed', says: [/mail\.server\.allowed_private_hosts/, /Mails wait/] },
  { name: 'port refused by the port policy', err: new AppError('JUNIPER_ERR_PORT_NOT_ALLOWED', 'The outgoing mail server "mine" (id 3) uses port 8080, which a server of a user other than an admin may not use (allowed: 25, 587). Use 587 (SMTP submission), or ask an admin to add port 8080 to the system parameter mail.server.allowed_ports.'), action: 'wait', failureType: 'port_not_allowed', says: [/port 8080/, /mail\.server\.allowed_ports/, /Mails wait until an admin allows the port/] },

  // No facts at all.
  { name: 'a plain Error', err: new Error('boom'), action: 'retry', failureType: 'internal' },
  { name: 'a thrown string', err: 'weird', action: 'retry', failureType: 'internal' },
];

describe('classifySendError', () => {
  for (const c of cases) {
    it(`${c.name} → ${c.action} (${c.failureType})`, () => {
      const decision = classifySendError(c.err, c.context ?? password);
      assert.equal(decision.action, c.action, decision.reason);
      assert.equal(decision.failureType, c.failureType, decision.reason);
      assert.ok(decision.reason.length > 20 && !/undefined|\[object /.test(decision.reason), decision.reason);
      const response = (c.err as { response?: string }).response;
      const responseCode = (c.err as { responseCode?: number }).responseCode;
      if (response) assert.ok(decision.reason.includes(response), `the reason quotes the server: ${decision.reason}`);
      assert.equal(decision.responseCode, responseCode);
      for (const words of c.says ?? []) assert.match(decision.reason, words);
      for (const words of c.saysNot ?? []) assert.doesNotMatch(decision.reason, words);
    });
  }

  it('never shows a password or token that an error message might carry in its cause', () => {
    const cause = Object.assign(new Error('invalid_grant'), { refreshToken: 'SECRET-REFRESH' });
    const decision = classifySendError(new AppError('JUNIPER_ERR_OAUTH_TOKEN_UNAVAILABLE', 'No OAuth2 access token could be obtained: invalid_grant.', { cause }), outlook);
    assert.doesNotMatch(decision.reason, /SECRET/);
  });
});

describe('enhancedStatus', () => {
  const table: Array<[string | undefined, string | undefined]> = [
    ['535 5.7.139 Authentication unsuccessful', '5.7.139'],
    ['550-5.1.1 The email account does not exist', '5.1.1'],
    ['451 Try again later', undefined],
    [undefined, undefined],
  ];
  for (const [response, status] of table) {
    it(`reads ${String(status)} from ${JSON.stringify(response)}`, () => assert.equal(enhancedStatus(response), status));
  }
});

describe('crashedReason', () => {
  for (const stops of [1, 3, 8]) {
    it(`names ${stops} stop(s) of the attempts, the likely cause and what to do`, () => {
      const reason = crashedReason(stops);
      assert.match(reason, new RegExp(`stopped without a result in ${stops} of its 8 attempts`));
      assert.match(reason, /may crash the sender/);
      assert.match(reason, /then retry the mail\.$/);
    });
  }
  it('splits around the count for the claim statement, which joins the same text in SQL', () => {
    const [before, after] = crashedReasonParts();
    assert.equal(`${before}5${after}`, crashedReason(5));
    assert.ok(!before.includes('\u0000') && !after.includes('\u0000'));
  });
});
