import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { simpleParser } from 'mailparser';
import { isAppError } from '../lib/errors.js';
import type { OutgoingMessage } from './mail-transport.js';
import { graphMime, headerAddresses, headerRecipients, withoutBccHeader } from './mime.js';

const base: OutgoingMessage = {
  messageId: '<m1@example.com>',
  from: '"Sales" <sales@example.com>',
  to: ['a@client.test'],
  cc: ['b@client.test'],
  bcc: ['hidden@client.test'],
  replyTo: 'replies@example.com',
  subject: 'Grüße',
  text: 'plain',
  html: '<p>html</p>',
  headers: { 'X-Order': '42' },
  attachments: [{ filename: 'a.pdf', contentType: 'application/pdf', content: Buffer.alloc(100_000, 1) }],
};
const envelope = { from: 'bounce@example.com', to: ['a@client.test', 'b@client.test', 'hidden@client.test'] };

describe('graphMime', () => {
  it('builds the message SMTP would send, plus the Bcc header Graph reads recipients from', async () => {
    const parsed = await simpleParser(await graphMime(base, envelope));
    assert.equal(parsed.messageId, '<m1@example.com>');
    assert.equal(parsed.from?.text, '"Sales" <sales@example.com>');
    assert.equal(parsed.replyTo?.text, 'replies@example.com');
    assert.equal(parsed.subject, 'Grüße');
    assert.equal(!Array.isArray(parsed.bcc) && parsed.bcc?.text, 'hidden@client.test');
    assert.equal(parsed.headers.get('x-order'), '42');
    assert.equal(parsed.text?.trim(), 'plain');
    assert.equal(parsed.attachments[0]?.content.length, 100_000);
  });

  it('writes no Bcc header when there is none', async () => {
    const mime = await graphMime({ ...base, bcc: [] }, { ...envelope, to: ['a@client.test', 'b@client.test'] });
    assert.equal(/^bcc:/im.test(mime.toString('latin1').split('\r\n\r\n')[0]!), false);
  });

  const raw = Buffer.from('From: Sales <sales@example.com>\r\nTo: a@client.test,\r\n  "B" <B@Client.test>\r\nSubject: raw\r\n\r\nBcc: not-a-header@client.test\r\n');

  it('sends a raw message as it is when the envelope is its headers\' recipients', async () => {
    const mime = await graphMime({ ...base, raw }, { from: 'x@example.com', to: ['a@client.test', 'b@client.test'] });
    assert.deepEqual(mime, raw);
  });

  it('adds a Bcc header to a raw message for envelope recipients its headers do not name', async () => {
    const mime = await graphMime({ ...base, raw }, { from: 'x@example.com', to: ['a@client.test', 'b@client.test', 'secret@client.test'] });
    assert.equal(mime.toString('latin1'), `Bcc: secret@client.test\r\n${raw.toString('latin1')}`);
  });

  it('refuses a raw message whose headers name recipients the mail is not for', async () => {
    await assert.rejects(graphMime({ ...base, raw }, { from: 'x@example.com', to: ['a@client.test'] }), (err) => isAppError(err) && err.details?.graphUnsendable === true && /b@client\.test/.test(err.message));
  });
});

describe('graphMime of a follow-up (an envelope narrower than the headers)', () => {
  it('refuses a built message whose headers name recipients the envelope leaves out: Graph would send it to them again', async () => {
    await assert.rejects(graphMime({ ...base, to: ['"A" <A@client.test>'] }, { ...envelope, to: ['b@client.test', 'hidden@client.test'] }), (err) => isAppError(err) && err.details?.graphUnsendable === true && /a@client\.test/i.test(err.message));
    await assert.rejects(graphMime(base, { ...envelope, to: ['a@client.test', 'b@client.test'] }), (err) => isAppError(err) && err.details?.graphUnsendable === true && /hidden@client\.test/.test(err.message));
  });

  it('builds one whose envelope is every recipient it names, display names and case aside', async () => {
    const parsed = await simpleParser(await graphMime({ ...base, to: ['"A" <A@Client.test>'] }, envelope));
    assert.equal(parsed.messageId, '<m1@example.com>');
  });
});

describe('headerAddresses', () => {
  it('reads folded To/Cc/Bcc and groups from the header block only', () => {
    const r = Buffer.from('To: team: x@a.test, y@a.test;\r\nCC: z@a.test\r\nFrom: me@a.test\r\n\r\nTo: body@a.test\r\n');
    assert.deepEqual([...headerRecipients(r)], ['x@a.test', 'y@a.test', 'z@a.test']);
    assert.deepEqual(headerAddresses(r, /^from$/i), ['me@a.test']);
  });
  it('works with bare LF line ends', () => {
    assert.deepEqual([...headerRecipients(Buffer.from('To: x@a.test\n\nTo: y@a.test\n'))], ['x@a.test']);
  });
});

describe('withoutBccHeader', () => {
  it('drops a folded Bcc header and keeps everything else byte for byte', () => {
    const raw = Buffer.from('From: a@x.test\r\nBcc: h1@x.test,\r\n h2@x.test\r\nTo: b@x.test\r\n\r\nBcc: body@x.test\r\n');
    assert.equal(withoutBccHeader(raw).toString(), 'From: a@x.test\r\nTo: b@x.test\r\n\r\nBcc: body@x.test\r\n');
  });
  it('drops a Bcc header that is the last one, without adding a line to the body', () => {
    assert.equal(withoutBccHeader(Buffer.from('To: b@x.test\r\nBCC: h@x.test\r\n\r\nbody')).toString(), 'To: b@x.test\r\n\r\nbody');
    assert.equal(withoutBccHeader(Buffer.from('To: b@x.test\nbcc : h@x.test\n\nbody')).toString(), 'To: b@x.test\n\nbody');
  });
  it('returns a message without Bcc unchanged (the same buffer)', () => {
    const raw = Buffer.from('To: b@x.test\r\n\r\nbody');
    assert.equal(withoutBccHeader(raw), raw);
  });
});

describe('graphMime for internationalised addresses', () => {
  it('matches an IDN header address with the queue\'s Unicode form instead of refusing the message', async () => {
    const raw = Buffer.from('From: s@example.com\r\nTo: j@xn--bcher-kva.example\r\n\r\nhi');
    assert.deepEqual(await graphMime({ ...base, raw }, { from: 's@example.com', to: ['j@bücher.example'] }), raw);
  });
});

describe('withoutBccHeader and line ends', () => {
  it('finds a Bcc header behind a bare CR, as mailparser does', () => {
    const raw = Buffer.from('From: a@x.test\r\nTo: d@x.test\r\n\rBcc: hidden@x.test\r\n\r\nbody\r\n');
    assert.equal(withoutBccHeader(raw).includes('hidden'), false);
  });
  it('ends the header at the first blank line whatever its line end, and keeps the body whole', () => {
    const raw = Buffer.from('From: a@x.test\nBcc: b@x.test\nTo: d@x.test\n\r\nHello\r\nBcc: keep me\r\n  indented quote\r\n');
    assert.equal(withoutBccHeader(raw).toString(), 'From: a@x.test\nTo: d@x.test\n\r\nHello\r\nBcc: keep me\r\n  indented quote\r\n');
  });
  it('drops Resent-Bcc too', () => {
    assert.equal(withoutBccHeader(Buffer.from('Resent-Bcc: r@x.test\r\nTo: d@x.test\r\n\r\nb')).toString(), 'To: d@x.test\r\n\r\nb');
  });
});
