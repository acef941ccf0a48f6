import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { corpus, corpusMessage, malformedMessage, type CorpusMessage } from '../../test/helpers/incoming.js';
import { handMade, mutants, seeds } from '../../test/helpers/incoming-poison.js';
import { parseMessage, parseMessageByMailparser, parseMessageSimply, type ParseOutcome } from './parse.js';
import { projectRoot } from '../../test/helpers/project-root.js';

const TO = 'inbound@example.test';
const fixtures = path.join(projectRoot, 'test/fixtures/incoming');
const fixture = (name: string) => fs.readFileSync(path.join(fixtures, name));
const crlf = (...lines: string[]) => Buffer.from(lines.join('\r\n'), 'latin1');

/**
 * The fast reader either leaves the message to mailparser or stores exactly what mailparser would have:
 * every field of ParsedMessage, attachments byte for byte. Returns whether it accepted.
 */
async function agrees(raw: Buffer, label: string): Promise<boolean> {
  const simple = await parseMessageSimply(raw);
  if (simple === undefined) return false;
  const reference: ParseOutcome = await parseMessageByMailparser(raw);
  assert.deepEqual(simple, reference, `${label}: the fast reader's fields differ from mailparser's\n${raw.toString('latin1').slice(0, 2000)}`);
  return true;
}

/** Everyday shapes beyond the bench corpus that the fast reader is meant to take. */
function everyday(): { name: string; raw: Buffer }[] {
  const head = ['From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@client.test>', `To: "Orders, Team" <orders@example.com>, bob@example.com`, 'Cc: undisclosed-recipients:;', 'Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= aus =?UTF-8?B?S8O2bG4=?=', 'Date: Tue, 04 Mar 2025 10:00:00 +0100', `Message-ID: <${crypto.randomUUID()}@client.test>`, 'In-Reply-To: <x@example.com> (sent earlier)', 'References: <w@example.com>', ' <x@example.com>', 'Delivered-To: catchall@example.com', 'X-Original-To: sales@example.com', 'Auto-Submitted: auto-replied', 'MIME-Version: 1.0'];
  const png = crypto.randomBytes(300).toString('base64').replace(/.{76}/g, '$&\r\n');
  return [
    { name: 'no content type', raw: crlf('From: a@client.test', 'To: b@example.com', 'Subject: bare', '', 'line one', '', 'line two', '') },
    { name: 'decoded headers', raw: crlf(...head, 'Content-Type: text/plain; charset="us-ascii"', '', 'Hello', '') },
    {
      name: 'related with an inline image',
      raw: crlf(...head, 'Content-Type: multipart/related; boundary="rel"', '', '--rel', 'Content-Type: multipart/alternative; boundary="alt"', '', '--alt', 'Content-Type: text/plain; charset=utf-8', '', 'See the logo.', '--alt', 'Content-Type: text/html; charset=utf-8', '', '<p>See <img src="cid:logo@x"></p>', '--alt--', '--rel', 'Content-Type: image/png; name="logo.png"', 'Content-ID: <logo@x>', 'Content-Disposition: inline; filename="logo.png"', 'Content-Transfer-Encoding: base64', '', png, '--rel--', ''),
    },
    {
      name: 'attachments of several kinds',
      raw: crlf(...head, 'Content-Type: multipart/mixed; boundary="m"', '', 'preamble', '--m', 'Content-Type: text/plain; charset=windows-1252', 'Content-Transfer-Encoding: 8bit', '', 'Price \x80 5', '', '--m', 'Content-Type: application/octet-stream; name="=?UTF-8?Q?R=C3=A9sum=C3=A9.docx?="', 'Content-Disposition: attachment', 'Content-Transfer-Encoding: base64', '', png, '--m', 'Content-Type: text/plain; name="notes.txt"', 'Content-Disposition: attachment; filename*=utf-8\'\'n%C3%B6tes.txt', '', 'plain notes', 'second line', '--m', 'Content-Type: application/json', '', '{"a":1}', '--m--', 'epilogue', ''),
    },
    { name: 'two text parts', raw: crlf(...head, 'Content-Type: multipart/mixed; boundary="t"', '', '--t', 'Content-Type: text/plain', '', 'first', '--t', 'Content-Type: text/plain; charset=iso-8859-15', '', 'second \xa4', '--t--', '') },
    { name: 'empty body', raw: crlf('From: a@client.test', 'Subject: nothing', '', '') },
    {
      // Fields the reader does not decode (describe() never reads them) around the ones it does, some of the
      // same decoded kinds (addresses, dates, priority that mailparser renames): the stored fields stay the same.
      name: 'Outlook-style header section',
      raw: crlf(
        'Received: from EX1.prod.outlook.com (2603:10a6::1) by EX2.prod.outlook.com with HTTPS; Tue, 4 Mar 2025 09:00:01 +0000',
        'ARC-Seal: i=1; a=rsa-sha256; s=arcselector; d=microsoft.com; cv=none; b=abc',
        'DKIM-Signature: v=1; a=rsa-sha256; d=client.test; s=s1; h=From:To:Subject; bh=x(y)=; b=z',
        ...head,
        'Reply-To: =?UTF-8?Q?Support_=C3=BC?= <help@client.test>',
        'Sender: bounces@client.test',
        'Return-Path: <bounces@client.test>',
        'Resent-Date: not a date at all',
        'X-Priority: 1 (Highest)',
        'Importance: high',
        'List-Unsubscribe: <mailto:u@client.test>, <https://client.test/u>',
        'Thread-Topic: =?UTF-8?B?R3LDvMOfZQ==?=',
        'X-MS-Exchange-Organization-SCL: -1',
        'X-MS-Has-Attach: ',
        'Content-Type: text/plain; charset=utf-8',
        '',
        'Hello',
        '',
      ),
    },
    { name: 'html in an alternative without text', raw: crlf('From: a@client.test', 'Content-Type: multipart/alternative; boundary="a"', '', '--a', 'Content-Type: text/html', '', '<b>only html</b>', '--a--', '') },
  ];
}

describe('the fast reader (postal-mime) against mailparser', () => {
  it('takes the bench corpus (every shape of it) and stores the same fields as mailparser', async () => {
    const messages = corpus(600, TO);
    const taken = new Map<CorpusMessage['kind'], number>();
    let accepted = 0;
    for (const m of messages) {
      if (await agrees(m.raw, m.kind)) {
        accepted++;
        taken.set(m.kind, (taken.get(m.kind) ?? 0) + 1);
      }
    }
    assert.ok(accepted / messages.length >= 0.9, `only ${accepted} of ${messages.length} corpus messages took the fast path`);
    for (const kind of ['plain', 'alternative', 'attachment', 'latin1', 'shift_jis', 'cp1252', 'no-message-id'] as const) assert.ok(taken.get(kind), `no ${kind} message took the fast path`);
  });

  it('takes everyday shapes: encoded headers, related images, attachments of several kinds, several text parts', async () => {
    for (const { name, raw } of everyday()) assert.ok(await agrees(raw, name), `${name}: declined`);
  });

  it('leaves reports, embedded messages, HTML-only mail and refused mail to mailparser, or agrees with it', async () => {
    // The fixtures: delivery reports go to mailparser; a bounce that is plain text may take either path.
    for (const name of fs.readdirSync(fixtures).filter((f) => f.endsWith('.eml'))) await agrees(fixture(name), name);
    for (const name of ['postfix-dsn.eml', 'delayed-dsn.eml']) assert.equal(await parseMessageSimply(fixture(name)), undefined, `${name}: a report`);
    const declined = [
      { name: 'html only', raw: crlf('From: a@client.test', 'Content-Type: text/html', '', '<p>Hello <b>there</b></p>', '') },
      { name: 'quoted-printable', raw: crlf('From: a@client.test', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: quoted-printable', '', 'Gr=C3=BC=C3=9Fe', '') },
      { name: 'flowed', raw: crlf('From: a@client.test', 'Content-Type: text/plain; format=flowed', '', 'a soft ', 'break', '') },
      { name: 'bad date', raw: crlf('From: a@client.test', 'Date: someday', '', 'x', '') },
      { name: '8-bit header', raw: crlf('From: a@client.test', 'Subject: Gr\xfc\xdfe', '', 'x', '') },
      { name: 'LF line ends', raw: Buffer.from('From: a@client.test\nSubject: lf\n\nbody\n') },
      { name: 'too many parts', raw: malformedMessage(TO) },
    ];
    for (const { name, raw } of declined) assert.equal(await parseMessageSimply(raw), undefined, `${name}: the fast reader should leave it to mailparser`);
    for (const kind of ['plain', 'alternative', 'attachment'] as const) assert.ok(await agrees(corpusMessage(kind, TO, 1).raw, kind));
  });

  it('never differs from mailparser on poison: mutants of every shape and the hand-made hostile messages', async () => {
    const dsn = fixture('postfix-dsn.eml');
    const hostile = handMade(TO, 'fast', 2 * 1024 * 1024).map((h) => ({ name: h.name, raw: h.raw }));
    const mutated = mutants(3000, [...seeds(TO, dsn), ...everyday().map((e) => e.raw)], 20261202, 'fast').map((raw, i) => ({ name: `mutant ${i}`, raw }));
    let accepted = 0;
    for (const { name, raw } of [...hostile, ...mutated]) if (await agrees(raw, name)) accepted++;
    // Mutants that stay simple are common (a flipped byte in a body, a dropped line): the comparison is not empty.
    assert.ok(accepted > 100, `only ${accepted} poison messages took the fast path`);
  });

  it('is what parseMessage uses, and mailparser still reads the rest', async () => {
    const plain = corpusMessage('plain', TO, 3).raw;
    assert.deepEqual(await parseMessage(plain), await parseMessageSimply(plain));
    const dsn = fixture('postfix-dsn.eml');
    assert.deepEqual(await parseMessage(dsn), await parseMessageByMailparser(dsn));
  });
});
