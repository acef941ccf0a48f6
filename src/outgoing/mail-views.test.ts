import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MailAttempt, OutgoingMail } from '../db/schema.js';
import { attemptViewFor, mailViewFor, redactedReason, replyCode, seesServerDetails, type MailViewer, type ReasonServer } from './mail-views.js';

const admin: MailViewer = { id: 1, role: 'admin' };
const jane: MailViewer = { id: 2, role: 'user' };
const pat: MailViewer = { id: 3, role: 'user' };
const shared: ReasonServer = { id: 10, name: 'Shared relay', owner_user_id: null };
const patsOwn: ReasonServer = { id: 11, name: 'Pat mailbox', owner_user_id: 3 };
const servers = new Map([shared, patsOwn].map((s) => [s.id, s]));

const FULL = 'Nothing listens on 10.0.0.5:25 (connection refused). Check the port (587 for STARTTLS, 465 for SSL) and that the server is running.';

function mail(over: Partial<OutgoingMail> = {}): OutgoingMail {
  return {
    id: 123, message_id: '<m@example.com>', from_header: 'jane@example.com', to_addrs: '["a@client.test"]', cc_addrs: '[]', bcc_addrs: '[]', reply_to: null, subject: 's',
    text_body: 't', html_body: null, headers: null, raw_sha256: null, forced_server_id: null, mass_mailing: 0, state: 'queued', attempts: 1, next_attempt_at: 0,
    lease_owner: null, lease_expires_at: null, waiting_reason: null, failure_type: 'connection', failure_reason: FULL, server_id: 10, effective_from: null, envelope_from: null,
    smtp_response: null, rejected_recipients: null, sent_at: null, sent_by: 'relay-host:42:abc', created_by_user_id: 2, bounced_at: null, bounce_reason: null, lost_leases: 0,
    retried_at: null, envelope_to: null, follow_up_of: null, created_at: 0, updated_at: 0, ...over,
  };
}

describe('seesServerDetails: who reads what a server said in full', () => {
  const cases: [string, MailViewer, ReasonServer | null | undefined, boolean][] = [
    ['an admin, about a shared server', admin, shared, true],
    ["an admin, about a user's personal server", admin, patsOwn, true],
    ['an admin, about an unknown server', admin, undefined, true],
    ['a user, about a shared server', jane, shared, false],
    ["a user, about another user's personal server", jane, patsOwn, false],
    ['a user, about their own personal server', pat, patsOwn, true],
    ['a user, about no recorded server', jane, null, false],
  ];
  for (const [name, viewer, server, sees] of cases) it(name, () => assert.equal(seesServerDetails(viewer, server), sees));
});

describe('redactedReason: what happened and what to do, without the server', () => {
  const cases: [string, string | null, 'retrying' | 'waiting' | 'failed', ReasonServer | undefined, string][] = [
    ['unreachable, retried', 'connection', 'retrying', shared, `The organisation's mail server "Shared relay" could not be reached. Juniper tries again later by itself. An admin has the details (mail 123).`],
    ['sign-in refused, waiting', 'auth', 'waiting', shared, `The organisation's mail server "Shared relay" cannot sign in to send mail. The mail waits until an admin fixes the server, then goes out by itself. An admin has the details (mail 123).`],
    ['a bad recipient, failed', 'invalid_address', 'failed', shared, `The organisation's mail server "Shared relay" refused the recipient address(es). Check the addresses for typos, then send it again. An admin has the details (mail 123).`],
    ['too large', 'too_large', 'failed', shared, `The organisation's mail server "Shared relay" refused the mail as too large. Send smaller attachments (or links to them). An admin has the details (mail 123).`],
    ['gave up retrying', 'timeout', 'failed', shared, `The organisation's mail server "Shared relay" did not answer in time. Juniper gave up: retry the mail later, or ask an admin if it keeps failing. An admin has the details (mail 123).`],
    ["another user's server", 'dns', 'retrying', patsOwn, `The mail server "Pat mailbox" could not be found on the network. Juniper tries again later by itself. An admin has the details (mail 123).`],
    ['an unknown type, no server', 'something_new', 'failed', undefined, `The mail server could not send the mail. Juniper gave up: retry the mail later, or ask an admin if it keeps failing. An admin has the details (mail 123).`],
  ];
  for (const [name, type, outcome, server, expected] of cases) it(name, () => assert.equal(redactedReason(123, type, outcome, server), expected));
});

describe('replyCode: the reply code and enhanced status, not the text', () => {
  const cases: [string | null, string | null][] = [
    ['250 2.0.0 Ok: queued as 4BcD1 on relay.corp.internal [10.0.0.5]', '250 2.0.0'],
    ['550-5.1.1 <x@client.test>: user unknown', '550 5.1.1'],
    ['202 Accepted by Microsoft Graph (request-id 1234)', '202'],
    ['  250 ok', '250'],
    ['queued on 10.0.0.5', null],
    ['', null],
    [null, null],
  ];
  for (const [reply, expected] of cases) it(`${JSON.stringify(reply)} → ${JSON.stringify(expected)}`, () => assert.equal(replyCode(reply), expected));
});

describe('mailViewFor: one mail as each viewer sees it', () => {
  it('an admin sees the reasons, the reply and the worker as stored', () => {
    const v = mailViewFor(admin, mail(), servers);
    assert.equal(v.failureReason, FULL);
    assert.equal(v.sentBy, 'relay-host:42:abc');
  });

  it('a user on a shared server: the failure type stays, the reason names neither host nor port, no worker', () => {
    const v = mailViewFor(jane, mail(), servers);
    assert.equal(v.failureType, 'connection');
    assert.equal(v.failureReason, `The organisation's mail server "Shared relay" could not be reached. Juniper tries again later by itself. An admin has the details (mail 123).`);
    assert.equal(v.sentBy, null);
  });

  it('a waiting mail: waitingReason redacted as waiting', () => {
    const v = mailViewFor(jane, mail({ failure_type: 'needs_reconnect', failure_reason: null, waiting_reason: 'Outgoing server "Shared relay" needs its Outlook account reconnected: AADSTS70008 for relay@corp.test.' }), servers);
    assert.equal(v.failureReason, null);
    assert.match(v.waitingReason ?? '', /^The organisation's mail server "Shared relay" cannot sign in to send mail\. The mail waits until an admin fixes the server/);
    assert.doesNotMatch(v.waitingReason ?? '', /AADSTS|corp\.test/);
  });

  it("a sent mail: the reply and the refused recipients' replies as codes only", () => {
    const sent = mail({ state: 'sent', failure_type: null, failure_reason: null, smtp_response: '250 2.0.0 Ok: queued as 4BcD1 on relay.corp.internal', rejected_recipients: JSON.stringify([{ address: 'x@client.test', response: '550 5.1.1 <x@client.test>: rejected by relay.corp.internal [10.0.0.5]' }, { address: 'y@client.test', response: 'no code' }]) });
    const v = mailViewFor(jane, sent, servers);
    assert.equal(v.smtpResponse, '250 2.0.0');
    assert.deepEqual(v.rejectedRecipients, [{ address: 'x@client.test', response: '550 5.1.1' }, { address: 'y@client.test', response: 'refused' }]);
    assert.equal(mailViewFor(admin, sent, servers).smtpResponse, '250 2.0.0 Ok: queued as 4BcD1 on relay.corp.internal');
  });

  it('a cancelled mail: its last reason redacted, saying nothing retries it', () => {
    const v = mailViewFor(jane, mail({ state: 'cancelled' }), servers);
    assert.equal(v.failureReason, `The organisation's mail server "Shared relay" could not be reached. The mail was cancelled: retry it to send it again. An admin has the details (mail 123).`);
  });

  it("Juniper's own reasons (routing, pacing, a stalled server, a crash) stay as written", () => {
    for (const [type, field] of [['no_server', 'failure_reason'], ['invalid_from', 'failure_reason'], ['crashed', 'failure_reason'], ['paced', 'waiting_reason'], ['server_stalled', 'waiting_reason']] as const) {
      const m = mail({ failure_type: type, failure_reason: null, waiting_reason: null, [field]: `own words for ${type}` });
      const v = mailViewFor(jane, m, servers);
      assert.equal(field === 'failure_reason' ? v.failureReason : v.waitingReason, `own words for ${type}`, type);
    }
  });

  it('the owner of a personal server reads it in full; another user would not', () => {
    const own = mail({ server_id: 11, created_by_user_id: 3 });
    assert.equal(mailViewFor(pat, own, servers).failureReason, FULL);
    assert.equal(mailViewFor(pat, own, servers).sentBy, null, 'the worker stays an operator matter');
    assert.notEqual(mailViewFor(jane, own, servers).failureReason, FULL);
  });

  it('a server missing from the map (gone) is not the viewer\'s: redacted, without a name', () => {
    assert.match(mailViewFor(jane, mail({ server_id: 99 }), servers).failureReason ?? '', /^The mail server could not be reached\./);
  });
});

describe('attemptViewFor: the history rows follow each attempt\'s own server', () => {
  const attempt = (serverId: number | null, outcome: 'retry' | 'failed' = 'retry'): MailAttempt => ({ id: 1, mail_id: 123, at: 0, outcome, server_id: serverId, failure_type: 'connection', reason: FULL });
  it('redacted for a user on a shared server, full for the admin and for the owner of a personal one', () => {
    assert.equal(attemptViewFor(jane, attempt(10), servers).reason, redactedReason(123, 'connection', 'retrying', shared));
    assert.equal(attemptViewFor(jane, attempt(10, 'failed'), servers).reason, redactedReason(123, 'connection', 'failed', shared));
    assert.equal(attemptViewFor(admin, attempt(10), servers).reason, FULL);
    assert.equal(attemptViewFor(pat, attempt(11), servers).reason, FULL);
  });
});
