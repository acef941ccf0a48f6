import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { bounceEvidence } from './inbound-rules.js';
import { messageIdsIn, PARSE_SLICE_BYTES, parseDeliveryStatus, parseMessage } from './parse.js';
import { projectRoot } from '../../test/helpers/project-root.js';

const fixture = (name: string) => fs.readFileSync(path.join(projectRoot, 'test/fixtures/incoming', name));

async function parsed(raw: Buffer | string) {
  const r = await parseMessage(Buffer.from(raw));
  assert.ok(r.ok, r.ok ? '' : r.error);
  return r.message;
}

describe('parsing inbound mail', () => {
  it('reads addresses, ids, dates and bodies, with envelope recipients for alias routing', async () => {
    const m = await parsed(
      ['Delivered-To: catchall@example.com', 'From: "Smith, Jane" <jane@client.test>', 'To: Orders <orders@example.com>, bob@example.com', 'Cc: undisclosed-recipients:;', 'Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=', 'Date: Tue, 04 Mar 2025 10:00:00 +0000', 'Message-ID: <a@client.test>', 'In-Reply-To: <x@example.com> (sent earlier)', 'References: <w@example.com>\r\n <x@example.com>', '', 'Hello', ''].join('\r\n'),
    );
    assert.equal(m.messageId, '<a@client.test>');
    assert.equal(m.inReplyTo, '<x@example.com>');
    assert.deepEqual(m.references, ['<w@example.com>', '<x@example.com>']);
    assert.deepEqual(m.to, ['Orders <orders@example.com>', 'bob@example.com']);
    assert.deepEqual(m.cc, []);
    assert.deepEqual(m.recipientAddresses, ['orders@example.com', 'bob@example.com', 'catchall@example.com']);
    assert.equal(m.subject, 'Grüße');
    assert.equal(m.date, Date.UTC(2025, 2, 4, 10));
    assert.equal(m.text?.trim(), 'Hello');
  });

  it('quarantines what is not mail: mailparser errors and data without a header section', async () => {
    const tooManyParts = `Content-Type: multipart/mixed; boundary="b"\r\n\r\n${'--b\r\n\r\nx\r\n'.repeat(1001)}--b--\r\n`;
    const cases: [string | Buffer, RegExp][] = [
      [tooManyParts, /mailparser: Max allowed child nodes exceeded/],
      [Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x0a]), /no header section/],
      ['\r\njust a body\r\n', /no header section/],
    ];
    for (const [raw, error] of cases) {
      const r = await parseMessage(Buffer.from(raw));
      assert.equal(r.ok, false);
      assert.match(r.ok ? '' : r.error, error);
    }
  });

  it('reads a Postfix DSN: the failed recipient, the diagnostic (unfolded) and the embedded original', async () => {
    const m = await parsed(fixture('postfix-dsn.eml'));
    assert.deepEqual(m.deliveryStatus?.recipients, [{ recipient: 'nobody@client.test', action: 'failed', status: '5.1.1', diagnostic: '550 5.1.1 <nobody@client.test>: Recipient address rejected: User unknown' }]);
    assert.deepEqual(m.embeddedMessageIds, ['<4f1c2d3e-0000-4000-8000-000000000001@example.com>']);
    assert.equal(bounceEvidence(m, 'bounce@example.com')?.candidates[0], '<4f1c2d3e-0000-4000-8000-000000000001@example.com>');
  });

  it('reads X-Original-Message-ID of a delayed report, which is no bounce', async () => {
    const m = await parsed(fixture('delayed-dsn.eml'));
    assert.equal(m.deliveryStatus?.originalMessageId, '<4f1c2d3e-0000-4000-8000-000000000002@example.com>');
    assert.equal(bounceEvidence(m, 'bounce@example.com'), undefined);
  });

  it('reads an Exim bounce to a VERP bounce address: X-Failed-Recipients and the original id quoted in the text', async () => {
    const m = await parsed(fixture('exim-bounce.eml'));
    assert.deepEqual(m.failedRecipients, ['gone@client.test']);
    const e = bounceEvidence(m, 'bounce@example.com');
    assert.deepEqual(e?.candidates, ['<4f1c2d3e-0000-4000-8000-000000000003@example.com>']);
    assert.match(e?.reason ?? '', /gone@client\.test/);
  });

  it('reads a message larger than one parse slice whole: text and attachment bytes across the slice boundaries', async () => {
    const pdf = crypto.randomBytes(5 * PARSE_SLICE_BYTES);
    // A quoted-printable text longer than a slice, with a soft line break and an encoded é in every line.
    const text = Array.from({ length: 2000 }, (_, i) => `line ${i} caf=C3=A9 and a long tail to fold over the limit of seventy-six=\r\n characters`).join('\r\n');
    const raw = [
      'From: a@client.test', 'Subject: big', 'Message-ID: <big@client.test>', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="b"', '',
      '--b', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: quoted-printable', '', text,
      '--b', 'Content-Type: application/pdf; name="scan.pdf"', 'Content-Transfer-Encoding: base64', '', pdf.toString('base64').replace(/.{76}/g, '$&\r\n'),
      '--b--', '',
    ].join('\r\n');
    assert.ok(raw.length > 6 * PARSE_SLICE_BYTES);
    const m = await parsed(raw);
    assert.equal(m.messageId, '<big@client.test>');
    assert.equal(m.text?.split('\n').length, 2000);
    assert.equal(m.text?.split('\n')[1999], 'line 1999 café and a long tail to fold over the limit of seventy-six characters');
    assert.equal(m.attachments.length, 1);
    assert.ok(m.attachments[0]!.content.equals(pdf), 'the attachment decodes to its exact bytes');
  });

  it('parses delivery-status fields: groups, folding, address types', () => {
    const ds = parseDeliveryStatus('Reporting-MTA: dns; a\r\nOriginal-Message-ID: <o@x>\r\n\r\nFinal-Recipient: rfc822;a@b.c\r\nAction: failed\r\nStatus: 5.0.0\r\n\r\nOriginal-Recipient: rfc822; c@d.e\r\nAction: delivered\r\nStatus: 2.0.0\r\n');
    assert.equal(ds.originalMessageId, '<o@x>');
    assert.deepEqual(ds.recipients.map((r) => [r.recipient, r.action, r.status]), [['a@b.c', 'failed', '5.0.0'], ['c@d.e', 'delivered', '2.0.0']]);
    assert.deepEqual(messageIdsIn('<a@b> junk <c@d>'), ['<a@b>', '<c@d>']);
    assert.deepEqual(messageIdsIn(null), []);
  });
});
