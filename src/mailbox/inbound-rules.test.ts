import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bounceEvidence, isBounceRecipient, mailboxAlias, threadCandidates, threadSubject } from './inbound-rules.js';
import type { ParsedMessage } from './parse.js';

const message = (over: Partial<ParsedMessage>): ParsedMessage => ({
  messageId: '<m@client.test>',
  inReplyTo: null,
  references: [],
  from: 'customer@client.test',
  to: [],
  cc: [],
  recipientAddresses: [],
  subject: 'Subject',
  date: null,
  text: null,
  html: null,
  attachments: [],
  autoSubmitted: null,
  deliveryStatus: null,
  failedRecipients: [],
  embeddedMessageIds: [],
  ...over,
});

describe('inbound rules', () => {
  it('finds the alias mailbox: the first recipient at the catch-all domain', () => {
    const cases: [string[], string | null, string | null][] = [
      [['orders@example.com'], 'example.com', 'orders'],
      [['Sales@Example.com'], 'example.com', 'sales'],
      [['someone@client.test', 'info@example.com', 'catchall@example.com'], 'example.com', 'info'],
      [['orders@sub.example.com'], 'example.com', null],
      [['orders@example.com'], null, null],
      [[], 'example.com', null],
    ];
    for (const [recipients, domain, alias] of cases) assert.equal(mailboxAlias(recipients, domain), alias, JSON.stringify([recipients, domain]));
  });

  it('recognises the bounce address and its VERP variants only', () => {
    const cases: [string, string | null, boolean][] = [
      ['bounce@example.com', 'bounce@example.com', true],
      ['Bounce@Example.com', 'bounce@example.com', true],
      ['bounce+42-abc@example.com', 'bounce@example.com', true],
      ['bouncer@example.com', 'bounce@example.com', false],
      ['bounce@other.com', 'bounce@example.com', false],
      ['bounce@example.com', null, false],
    ];
    for (const [address, bounce, expected] of cases) assert.equal(isBounceRecipient(address, bounce), expected, address);
  });

  it('threads on In-Reply-To first, then References from the nearest', () => {
    assert.deepEqual(threadCandidates({ inReplyTo: '<c>', references: ['<a>', '<b>', '<c>'] }), ['<c>', '<b>', '<a>']);
    assert.deepEqual(threadCandidates({ inReplyTo: null, references: ['<a>', '<b>'] }), ['<b>', '<a>']);
    assert.deepEqual(threadCandidates({ inReplyTo: null, references: [] }), []);
  });

  it('names a thread by its subject without stacked reply and forward prefixes', () => {
    const cases: [string, string][] = [
      ['Re: Quote 42', 'Quote 42'],
      ['RE: Fwd: AW: Quote 42', 'Quote 42'],
      ['Re[2]: Quote', 'Quote'],
      ['Quote: Re: pricing', 'Quote: Re: pricing'],
      ['', ''],
    ];
    for (const [subject, expected] of cases) assert.equal(threadSubject(subject), expected);
  });

  describe('bounces', () => {
    const failedReport = { originalMessageId: null, recipients: [{ recipient: 'nobody@client.test', action: 'failed', status: '5.1.1', diagnostic: '550 User unknown' }] };
    it('a failed delivery-status report: the original from the report, the embedded message, then threading ids', () => {
      const e = bounceEvidence(message({ deliveryStatus: { ...failedReport, originalMessageId: '<orig@x>' }, embeddedMessageIds: ['<emb@x>'], inReplyTo: '<irt@x>' }), null);
      assert.deepEqual(e, { candidates: ['<orig@x>', '<emb@x>', '<irt@x>'], reason: 'nobody@client.test: 5.1.1 550 User unknown' });
    });
    it('a delayed or delivered report is not a bounce', () => {
      for (const action of ['delayed', 'delivered', 'relayed']) {
        assert.equal(bounceEvidence(message({ deliveryStatus: { originalMessageId: null, recipients: [{ recipient: 'a@b.c', action, status: '4.4.7', diagnostic: '' }] } }), 'bounce@example.com'), undefined, action);
      }
    });
    it("mail to the bounce address counts, a person's auto-reply to it does not, other mail does not", () => {
      const toBounce = message({ recipientAddresses: ['bounce@example.com'], failedRecipients: ['gone@client.test'], references: ['<orig@x>'], subject: 'failed' });
      assert.deepEqual(bounceEvidence(toBounce, 'bounce@example.com'), { candidates: ['<orig@x>'], reason: 'Delivery failed for gone@client.test: failed' });
      const outOfOffice = { ...toBounce, failedRecipients: [], autoSubmitted: 'auto-replied', from: 'Jane <jane@client.test>' };
      assert.equal(bounceEvidence(outOfOffice, 'bounce@example.com'), undefined, "a person's auto-reply");
      assert.ok(bounceEvidence({ ...toBounce, autoSubmitted: 'auto-replied' }, 'bounce@example.com'), 'an auto-replied bounce naming failed recipients');
      assert.ok(bounceEvidence({ ...outOfOffice, from: 'Mail Delivery System <MAILER-DAEMON@mx.client.test>' }, 'bounce@example.com'), "from the mailer daemon");
      assert.equal(bounceEvidence(toBounce, null), undefined, 'no bounce address configured');
      assert.equal(bounceEvidence(message({ recipientAddresses: ['orders@example.com'] }), 'bounce@example.com'), undefined);
    });
    it('takes Message-IDs quoted in the text (Exim returns headers inline)', () => {
      const e = bounceEvidence(message({ recipientAddresses: ['bounce@example.com'], text: 'copy:\n\nMessage-ID: <orig@x>\nSubject: hi\n' }), 'bounce@example.com');
      assert.deepEqual(e?.candidates, ['<orig@x>']);
    });
  });
});
