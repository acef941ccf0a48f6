import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hasLineBreak, isStructuralHeader, MAX_HEADER_VALUE_CHARS, refusedHeader, replyReferences } from './header-rules.js';

describe('free header allow-list', () => {
  it('lets users set only the allowed headers and admins everything but structural ones', () => {
    // name, user may, admin may
    const table: [string, boolean, boolean][] = [
      ['X-Juniper-Mail-Id', true, true],
      ['x-priority', true, true],
      ['X-Campaign', true, true],
      ['List-Unsubscribe', true, true],
      ['List-Unsubscribe-Post', true, true],
      ['List-Id', true, true],
      ['Auto-Submitted', true, true],
      ['Precedence', true, true],
      ['Importance', true, true],
      ['In-Reply-To', true, true],
      ['References', true, true],
      ['Thread-Topic', true, true],
      ['Keywords', true, true],
      ['Organization', true, true],
      ['X-Original-From', false, true],
      ['X-MS-Exchange-Organization-SCL', false, true],
      ['X-Forefront-Antispam-Report', false, true],
      ['X-Spam-Status', false, true],
      ['Disposition-Notification-To', false, true],
      ['Errors-To', false, true],
      ['Resent-From', false, false],
      ['Resent-To', false, false],
      ['DKIM-Signature', false, false],
      ['Authentication-Results', false, false],
      ['ARC-Seal', false, false],
      ['Received', false, false],
      ['Return-Path', false, false],
      ['From', false, false],
      ['Sender', false, false],
      ['bcc', false, false],
      ['Content-Type', false, false],
      ['Content-Transfer-Encoding', false, false],
      ['MIME-Version', false, false],
      ['Message-ID', false, false],
      ['Bad Name', false, false],
      ['Bad:Name', false, false],
      ['', false, false],
      ['X-Evil\r\nBcc', false, false],
    ];
    for (const [name, user, admin] of table) {
      assert.equal(refusedHeader(name, 'user') === null, user, `user: ${JSON.stringify(name)}`);
      assert.equal(refusedHeader(name, 'admin') === null, admin, `admin: ${JSON.stringify(name)}`);
    }
  });

  it('names the header in every refusal', () => {
    assert.match(refusedHeader('Resent-From', 'user')!, /Resent-From/);
    assert.match(refusedHeader('X-MS-Exchange-Organization-SCL', 'user')!, /X-MS-Exchange-Organization-SCL may be set only by an admin/);
    assert.match(refusedHeader('Subject', 'admin')!, /own field/);
  });

  it('marks structural headers for the SMTP adapter, and finds line breaks and NUL', () => {
    assert.ok(isStructuralHeader('Content-Disposition') && isStructuralHeader('DKIM-Signature') && !isStructuralHeader('X-Campaign'));
    for (const v of ['a\rb', 'a\nb', 'a\r\nb', 'a\u0000b']) assert.ok(hasLineBreak(v), JSON.stringify(v));
    for (const v of ['a b', 'a\tb', '=?utf-8?Q?a=0D=0Ab?=']) assert.ok(!hasLineBreak(v), JSON.stringify(v));
  });
});

describe('replyReferences', () => {
  const ids = Array.from({ length: 40 }, (_, i) => `<message-${i}.${'x'.repeat(30)}@mail.gmail.com>`);
  it('keeps a short thread whole', () => assert.equal(replyReferences(ids.slice(0, 3)), ids.slice(0, 3).join(' ')));
  it("fits a long thread's References in one header value: the first ID and as many of the latest as fit, in order", () => {
    const value = replyReferences(ids);
    assert.ok(ids.join(' ').length > MAX_HEADER_VALUE_CHARS, 'the whole list is over the limit');
    assert.ok(value.length <= MAX_HEADER_VALUE_CHARS, `${value.length} characters`);
    const kept = value.split(' ');
    assert.equal(kept[0], ids[0], "the thread's first message stays");
    assert.deepEqual(kept.slice(1), ids.slice(ids.length - (kept.length - 1)), 'then the latest, none skipped between them');
    assert.equal(kept.at(-1), ids.at(-1), 'the replied-to message is last');
    assert.ok(value.length + 1 + ids[ids.length - kept.length]!.length > MAX_HEADER_VALUE_CHARS, 'as many as fit');
  });
  it("keeps the replied-to message's ID when it and the thread's first do not fit together", () => {
    const first = `<${'f'.repeat(600)}@example.com>`;
    const parent = `<${'p'.repeat(450)}@example.com>`;
    assert.equal(replyReferences([first, '<middle@example.com>', parent]), `<middle@example.com> ${parent}`);
  });
});
