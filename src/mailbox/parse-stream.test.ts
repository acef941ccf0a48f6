import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { simpleParser, type ParsedMail } from 'mailparser';
import { corpusMessage, type CorpusMessage } from '../../test/helpers/incoming.js';
import { PARSE_OPTIONS } from './parse.js';
import { readMail, type StreamedMail } from './parse-stream.js';
import { projectRoot } from '../../test/helpers/project-root.js';

const fixtures = path.join(projectRoot, 'test/fixtures/incoming');
const KINDS: CorpusMessage['kind'][] = ['plain', 'alternative', 'attachment', 'latin1', 'shift_jis', 'cp1252', 'no-message-id'];

function withAttachments(count: number, bytes: number): Buffer {
  const parts = Array.from({ length: count }, (_, i) => ['--b', `Content-Type: application/octet-stream; name="part-${i}.bin"`, 'Content-Transfer-Encoding: base64', '', crypto.randomBytes(bytes).toString('base64').replace(/.{76}/g, '$&\r\n')].join('\r\n'));
  return Buffer.from(['From: a@client.test', 'Subject: parts', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="b"', '', '--b', 'Content-Type: text/plain', '', 'Parts.', ...parts, '--b--', ''].join('\r\n'));
}

/** What readMail keeps, taken from simpleParser's result: the reference it must match. */
const kept = (mail: ParsedMail): StreamedMail => ({
  headers: mail.headers,
  headerKeys: mail.headerLines.map((h) => h.key),
  text: mail.text,
  html: mail.html === false ? undefined : mail.html,
  attachments: mail.attachments.map((a) => ({ filename: a.filename, contentType: a.contentType, contentId: a.contentId, content: a.content })),
});

const inPieces = (raw: Buffer, size: number) => Readable.from(Array.from({ length: Math.ceil(raw.length / size) }, (_, i) => raw.subarray(i * size, i * size + size)));

describe('reading a message with its attachments in one buffer', () => {
  it('keeps what simpleParser gives, for every fixture and corpus shape, read in small slices and whole', async () => {
    const raws = [
      ...KINDS.map((kind, i) => corpusMessage(kind, 'inbox@example.com', i).raw),
      ...fs.readdirSync(fixtures).map((name) => fs.readFileSync(path.join(fixtures, name))),
      withAttachments(3, 70_000),
      withAttachments(1, 0),
      // Not base64, and nearly the whole message: more than the buffer starts with.
      Buffer.from(['From: a@client.test', 'Subject: log', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="b"', '', '--b', 'Content-Type: text/csv; name="log.csv"', 'Content-Disposition: attachment', 'Content-Transfer-Encoding: 8bit', '', 'a,b,c\r\n'.repeat(40_000), '--b--', ''].join('\r\n')),
    ];
    let attachments = 0;
    for (const raw of raws) {
      const expected = kept(await simpleParser(raw, PARSE_OPTIONS));
      attachments += expected.attachments.length;
      assert.deepEqual(await readMail(inPieces(raw, 97), raw.length, PARSE_OPTIONS), expected, raw.subarray(0, 200).toString('latin1'));
      assert.deepEqual(await readMail(Readable.from([raw]), raw.length, PARSE_OPTIONS), expected, raw.subarray(0, 200).toString('latin1'));
    }
    assert.ok(attachments >= 5, 'the comparison covers attachment bytes');
  });

  it('refuses what simpleParser refuses', async () => {
    const raw = Buffer.from(`Content-Type: multipart/mixed; boundary="b"\r\n\r\n${'--b\r\n\r\nx\r\n'.repeat(1001)}--b--\r\n`);
    await assert.rejects(simpleParser(raw, PARSE_OPTIONS), /Max allowed child nodes exceeded/);
    await assert.rejects(readMail(Readable.from([raw]), raw.length, PARSE_OPTIONS), /Max allowed child nodes exceeded/);
  });
});
