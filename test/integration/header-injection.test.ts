// Header injection through POST /api/v1/mails: a CR, LF, CRLF or NUL in any address field (from, to, cc, bcc,
// replyTo), display name, subject, free header or attachment name is refused with 400 and nothing is queued;
// encoded forms (RFC 2047 words carrying =0D=0A, %0D%0A) carry no raw line break and are delivered to a real
// SMTP sink, where the message parsed with mailparser has no injected header and the envelope only the intended
// recipients. Free headers follow the one allow-list (header-rules.ts). Both databases.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { simpleParser } from 'mailparser';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { testDispatcher, type TestDispatcher } from '../helpers/outgoing.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

const BREAKS = { crlf: '\r\n', cr: '\r', lf: '\n', nul: '\u0000', 'crlf+fold': '\r\n ' } as const;
const INJECTED = 'Bcc: victim@evil.example';

for (const dialect of dialects) {
  describe(`header injection over the API (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let sink: SmtpSink;
    let d: TestDispatcher;
    let adminKey: string;
    let userKey: string;

    before(async () => {
      sink = await startSmtpSink({ auth: 'none', tls: 'none' });
      t = await startTestApp(dialect);
      http = await t.app.http();
      adminKey = (await t.createUser('admin', 'admin')).apiKey;
      userKey = (await t.createUser('jane', 'user')).apiKey;
      const server = await http.inject({
        method: 'POST',
        url: '/api/v1/outgoing-servers',
        headers: { authorization: `Bearer ${adminKey}` },
        payload: { name: 'sink', host: '127.0.0.1', port: sink.port, security: 'none', auth: 'none', fromFilter: null },
      });
      assert.equal(server.statusCode, 201, server.body);
      d = testDispatcher(t.app);
    });
    after(async () => {
      await d.close();
      await t.close();
      await sink.stop();
    });

    const send = (payload: object, key = adminKey) =>
      http.inject({ method: 'POST', url: '/api/v1/mails', headers: { authorization: `Bearer ${key}` }, payload: { from: 'sender@example.com', to: ['customer@client.test'], subject: 'hello', text: 'body', ...payload } });
    const queued = async () => (await t.app.services.queue.list()).length;

    it('refuses a raw line break or NUL in every address, name, subject, header and attachment field with 400, queueing nothing', async () => {
      const fields: [string, (s: string) => object][] = [
        ['from', (s) => ({ from: `sender@example.com${s}${INJECTED}` })],
        ['from display name', (s) => ({ from: `"Sender${s}${INJECTED}" <sender@example.com>` })],
        ['to', (s) => ({ to: [`customer@client.test${s}${INJECTED}`] })],
        ['to display name', (s) => ({ to: [`Customer${s}${INJECTED} <customer@client.test>`] })],
        ['cc', (s) => ({ cc: [`copy@client.test${s}${INJECTED}`] })],
        ['bcc', (s) => ({ bcc: [`hidden@client.test${s}${INJECTED}`] })],
        ['replyTo', (s) => ({ replyTo: `reply@example.com${s}${INJECTED}` })],
        ['replyTo display name', (s) => ({ replyTo: `"Reply${s}${INJECTED}" <reply@example.com>` })],
        ['subject', (s) => ({ subject: `hello${s}${INJECTED}` })],
        ['header value', (s) => ({ headers: { 'X-Campaign': `spring${s}${INJECTED}` } })],
        ['header name', (s) => ({ headers: { [`X-Campaign${s}Bcc`]: 'victim@evil.example' } })],
        ['attachment filename', (s) => ({ attachments: [{ filename: `a.txt${s}${INJECTED}`, contentBase64: 'eA==' }] })],
        ['attachment content type', (s) => ({ attachments: [{ filename: 'a.txt', contentType: `text/plain${s}${INJECTED}`, contentBase64: 'eA==' }] })],
      ];
      const before = await queued();
      for (const [field, payload] of fields) {
        for (const [kind, s] of Object.entries(BREAKS)) {
          const res = await send(payload(s));
          assert.equal(res.statusCode, 400, `${field} with ${kind}: ${res.statusCode} ${res.body}`);
          assert.match(res.json<{ error: { code: string } }>().error.code, /JUNIPER_ERR_VALIDATION/);
        }
      }
      assert.equal(await queued(), before, 'nothing was queued');
    });

    it('delivers encoded line breaks as harmless text: no injected header, no extra recipient', async () => {
      const before = sink.messages.length;
      const encoded = '=?utf-8?Q?x=0D=0ABcc:_victim@evil.example?=';
      const res = await send({
        from: '=?utf-8?Q?Sender=0D=0AX-Injected=3A_yes?= <sender@example.com>',
        replyTo: `"%0D%0ABcc: victim@evil.example" <reply@example.com>`,
        subject: `Order ${encoded} %0D%0A${INJECTED}`,
        headers: { 'X-Campaign': `spring ${encoded} %0d%0a${INJECTED}` },
      });
      assert.equal(res.statusCode, 202, res.body);
      await d.drain();
      assert.equal(sink.messages.length, before + 1);
      const got = sink.messages[before]!;
      assert.deepEqual(got.to, ['customer@client.test'], 'the envelope has only the intended recipient');
      const parsed = await simpleParser(got.raw);
      assert.equal(parsed.headers.has('bcc'), false, 'no Bcc header');
      const headerNames = parsed.headerLines.map((h) => h.key);
      assert.equal(headerNames.filter((k) => k === 'bcc' || k === 'x-injected').length, 0);
      // Every header line of the raw message is a header Juniper meant to write.
      const head = got.raw.toString('latin1').split('\r\n\r\n')[0]!;
      for (const line of head.split('\r\n').filter((l) => !/^[ \t]/.test(l))) {
        assert.match(line, /^(From|To|Reply-To|Subject|Message-ID|Date|MIME-Version|Content-Type|Content-Transfer-Encoding|X-Campaign|Received|Return-Path):/i, `unexpected header line ${JSON.stringify(line)}`);
      }
      assert.match(parsed.subject ?? '', /^Order /);
    });

    it('lets users set only allow-listed free headers, naming the refused one; admins more, never structural ones', async () => {
      const userSend = (headers: Record<string, string>) => send({ from: 'jane@example.com', headers }, userKey);
      for (const name of ['Resent-From', 'DKIM-Signature', 'Authentication-Results', 'X-MS-Exchange-Organization-SCL', 'Received', 'Return-Path', 'Content-Type', 'Sender']) {
        const res = await userSend({ [name]: 'x' });
        assert.equal(res.statusCode, 400, `${name}: ${res.body}`);
        assert.match(res.json<{ error: { message: string } }>().error.message, new RegExp(name), `the refusal names ${name}`);
      }
      for (const name of ['X-Campaign', 'List-Unsubscribe', 'List-Id', 'Auto-Submitted', 'Precedence', 'In-Reply-To', 'References', 'Importance']) {
        const res = await userSend({ [name]: '<x@example.com>' });
        assert.equal(res.statusCode, 202, `${name}: ${res.body}`);
      }
      assert.equal((await send({ headers: { 'X-MS-Exchange-Organization-SCL': '-1', Organization: 'Example' } })).statusCode, 202, 'an admin may set more');
      for (const name of ['Resent-From', 'DKIM-Signature', 'Authentication-Results', 'Bcc', 'Content-Transfer-Encoding', 'MIME-Version', 'Received']) {
        const res = await send({ headers: { [name]: 'x' } });
        assert.equal(res.statusCode, 400, `admin ${name}: ${res.body}`);
      }
    });
  });
}
