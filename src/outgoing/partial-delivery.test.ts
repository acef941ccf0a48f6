import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_ATTEMPTS } from '../lib/backoff.js';
import { followUpKey, headerMessageId, isRecipientLimit, planFollowUp, replyCodeOf, splitRefusals, type RecipientRefusal } from './partial-delivery.js';

describe('splitRefusals: which refused recipients are tried again', () => {
  const cases: { name: string; refusal: RecipientRefusal; deferred: boolean }[] = [
    { name: "Postfix's smtpd_recipient_limit (452 4.5.3)", refusal: { address: 'a@x.test', response: '452 4.5.3 Error: too many recipients', responseCode: 452 }, deferred: true },
    { name: 'greylisting (450 4.2.0)', refusal: { address: 'a@x.test', response: '450 4.2.0 <a@x.test>: Recipient address rejected: Greylisted', responseCode: 450 }, deferred: true },
    { name: 'mailbox busy (451)', refusal: { address: 'a@x.test', response: '451 4.3.0 Try again', responseCode: 451 }, deferred: true },
    { name: 'unknown user (550 5.1.1)', refusal: { address: 'a@x.test', response: '550 5.1.1 User unknown', responseCode: 550 }, deferred: false },
    { name: 'relay denied (554)', refusal: { address: 'a@x.test', response: '554 5.7.1 Relay access denied', responseCode: 554 }, deferred: false },
    { name: 'code read from the reply when the transport gave none', refusal: { address: 'a@x.test', response: '452 4.5.3 Too many recipients' }, deferred: true },
    { name: 'the transport\'s code wins over the text', refusal: { address: 'a@x.test', response: 'try again', responseCode: 421 }, deferred: true },
    { name: 'no code at all stays refused (as before)', refusal: { address: 'a@x.test', response: '' }, deferred: false },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const split = splitRefusals([c.refusal]);
      const entry = { address: c.refusal.address, response: c.refusal.response };
      assert.deepEqual(split, c.deferred ? { deferred: [entry], refused: [] } : { deferred: [], refused: [entry] });
    });
  }

  it('keeps the order of each kind and drops the code from what is stored', () => {
    const split = splitRefusals([
      { address: 'a@x.test', response: '452 4.5.3 Too many recipients', responseCode: 452 },
      { address: 'b@x.test', response: '550 5.1.1 User unknown', responseCode: 550 },
      { address: 'c@x.test', response: '452 4.5.3 Too many recipients', responseCode: 452 },
    ]);
    assert.deepEqual(split.deferred.map((d) => d.address), ['a@x.test', 'c@x.test']);
    assert.deepEqual(split.refused, [{ address: 'b@x.test', response: '550 5.1.1 User unknown' }]);
    assert.equal(replyCodeOf({ address: 'a', response: ' 451 x' }), 451);
  });
});

describe('follow-up Message-ID keys', () => {
  it('keeps the header Message-ID and stays unique per mail followed, a follow-up of a follow-up too', () => {
    const first = followUpKey('<abc@example.com>', 7);
    assert.equal(first, '<abc@example.com> follow-up-of:7');
    assert.equal(headerMessageId(first), '<abc@example.com>');
    const second = followUpKey(first, 9);
    assert.equal(second, '<abc@example.com> follow-up-of:9');
    assert.equal(headerMessageId(second), '<abc@example.com>');
    assert.equal(headerMessageId('<abc@example.com>'), '<abc@example.com>');
  });
});

describe('planFollowUp', () => {
  const deferred = [{ address: 'a@x.test', response: '452 4.5.3 Too many recipients' }];
  it('queues the deferred recipients while the mail has attempts left, naming the server and its reply', () => {
    const plan = planFollowUp(deferred, 1, 'postfix');
    assert.equal(plan.state, 'queued');
    assert.match(plan.reason, /"postfix" deferred 1 recipient at RCPT TO.*a@x\.test: 452 4\.5\.3 Too many recipients/);
  });
  it('fails them with the reason once the mail used its attempts', () => {
    const plan = planFollowUp(deferred, MAX_ATTEMPTS, 'postfix');
    assert.equal(plan.state, 'failed');
    assert.match(plan.reason, new RegExp(`gave up after ${MAX_ATTEMPTS} attempts`));
  });
  it('names three and counts the rest', () => {
    const many = Array.from({ length: 1200 }, (_, i) => ({ address: `r${i}@x.test`, response: '452 4.5.3 Too many recipients' }));
    const plan = planFollowUp(many, 1, 'postfix');
    assert.match(plan.reason, /deferred 1200 recipients/);
    assert.match(plan.reason, /\(and 1197 more\)/);
    assert.ok(plan.reason.length < 400);
  });
});

describe('isRecipientLimit', () => {
  it("is a server's limit of recipients a transaction only when every deferral says so", () => {
    const d = (response: string) => ({ address: 'a@x.test', response });
    assert.equal(isRecipientLimit([d('452 4.5.3 Too many recipients')]), true);
    assert.equal(isRecipientLimit([d('452 Too many recipients received this hour')]), true);
    assert.equal(isRecipientLimit([d('452 4.5.3 Error: too many recipients'), d('452 4.5.3 Error: too many recipients')]), true);
    assert.equal(isRecipientLimit([d('450 4.2.0 Greylisted, try again later')]), false, 'greylisting waits its backoff');
    assert.equal(isRecipientLimit([d('452 4.2.2 Mailbox full')]), false);
    assert.equal(isRecipientLimit([d('452 4.5.3 Too many recipients'), d('450 4.2.0 Greylisted')]), false);
    assert.equal(isRecipientLimit([]), false);
  });
});
