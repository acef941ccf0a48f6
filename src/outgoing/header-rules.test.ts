import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hasLineBreak, isStructuralHeader, refusedHeader } from './header-rules.js';

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
