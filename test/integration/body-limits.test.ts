// Request bodies over a real socket. Who calls is decided from the headers before the body is read: a request
// without credentials declaring a 20 MB body is answered 401 while the client has sent 64 KB of it and waits
// (a server that read the body first would never answer; no clock decides). Authenticated mail within the
// limits still arrives; bodies over a route's limit get 413 naming the limit; a form is capped in fields too.
// Both databases: sessions and API keys are looked up in them.
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import { FORM_MAX_FIELDS } from '../../src/http/body-limits.js';
import { SNAPSHOT_TTL_MS } from '../../src/settings/parameters.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';

const MB = 1024 * 1024;

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Body bytes the client had written when the answer came. */
  sent: number;
}

/**
 * Sends the request head declaring `declared` body bytes, then only `send` of them, and waits for the answer
 * with the rest unsent. Fails (no answer) when the server waits for the whole body before answering.
 */
function answerBeforeBody(port: number, method: string, path: string, headers: Record<string, string>, declared: number, send: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let sent = 0;
    let received = Buffer.alloc(0);
    const waiting = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${method} ${path}: no answer while ${sent} of ${declared} body bytes were sent (the server waits for the body)`));
    }, 20_000);
    socket.on('connect', () => {
      const head = [`${method} ${path} HTTP/1.1`, 'host: 127.0.0.1', `content-length: ${declared}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), '', ''].join('\r\n');
      socket.write(head);
      socket.write(Buffer.alloc(send, 'k'), () => (sent = send));
    });
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const end = received.indexOf('\r\n\r\n');
      if (end === -1) return;
      const [statusLine, ...lines] = received.subarray(0, end).toString('latin1').split('\r\n');
      const answerHeaders = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      const length = Number(answerHeaders['content-length'] ?? 0);
      if (received.length < end + 4 + length) return;
      clearTimeout(waiting);
      socket.destroy();
      resolve({ status: Number(statusLine!.split(' ')[1]), headers: answerHeaders, body: received.subarray(end + 4, end + 4 + length).toString('utf8'), sent });
    });
    socket.on('error', (e) => {
      clearTimeout(waiting);
      reject(e);
    });
  });
}

const FORM = 'application/x-www-form-urlencoded';
const JSON_TYPE = 'application/json';

for (const dialect of dialects) {
  describe(`request bodies over a socket (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let port: number;
    let base: string;
    let jane: { id: number; apiKey: string; email: string; cookie: string; csrfToken: string };
    let admin: { apiKey: string };

    before(async () => {
      t = await startTestApp(dialect, { logLevel: 'warn' });
      http = await t.app.http();
      await http.listen({ port: 0, host: '127.0.0.1' });
      port = (http.server.address() as AddressInfo).port;
      base = `http://127.0.0.1:${port}`;
      admin = await t.createUser('admin', 'admin');
      const j = await t.createUser('jane', 'user');
      const session = await t.app.services.sessions.create(j.id);
      jane = { ...j, email: 'jane@example.com', cookie: `juniper_session=${session.token}`, csrfToken: session.csrfToken };
      // Enqueued mails go through this (never started) server: the test is about arriving, not sending.
      await t.app.services.parameters.set('mail.server.allowed_private_hosts', '127.0.0.1', cliActor);
      const created = await fetch(`${base}/api/v1/outgoing-servers`, {
        method: 'POST',
        headers: { authorization: `Bearer ${admin.apiKey}`, 'content-type': JSON_TYPE },
        body: JSON.stringify({ name: 'relay', host: '127.0.0.1', port: 2525, security: 'none', auth: 'none', fromFilter: 'example.com' }),
      });
      assert.equal(created.status, 201, await created.text());
    });
    after(async () => {
      await http.close();
      await t.close();
    });

    it('answers an unauthenticated 20 MB POST to /compose and to /api/v1/mails/batch with 401 before the body is sent', async () => {
      const compose = await answerBeforeBody(port, 'POST', '/compose', { 'content-type': FORM, accept: 'text/html' }, 20 * MB, 64 * 1024);
      assert.equal(compose.status, 401, compose.body);
      assert.match(compose.headers['content-type'] ?? '', /text\/html/, 'the browser gets the sign-in error page');
      const batch = await answerBeforeBody(port, 'POST', '/api/v1/mails/batch', { 'content-type': JSON_TYPE }, 20 * MB, 64 * 1024);
      assert.equal(batch.status, 401, batch.body);
      assert.equal((JSON.parse(batch.body) as { error: { code: string } }).error.code, 'JUNIPER_ERR_UNAUTHENTICATED');
      // An unknown session cookie or API key is no better than none.
      const stale = await answerBeforeBody(port, 'POST', '/api/v1/mails', { 'content-type': JSON_TYPE, cookie: 'juniper_session=forged' }, 20 * MB, 64 * 1024);
      assert.equal(stale.status, 401, stale.body);
      const badKey = await answerBeforeBody(port, 'POST', '/api/v1/mails/batch', { 'content-type': JSON_TYPE, authorization: 'Bearer jnp_forged' }, 20 * MB, 64 * 1024);
      assert.equal(badKey.status, 401, badKey.body);
    });

    it('refuses a signed-in user on an admin route before the body too (403)', async () => {
      const res = await answerBeforeBody(port, 'PUT', '/api/v1/settings', { 'content-type': JSON_TYPE, authorization: `Bearer ${jane.apiKey}` }, 20 * MB, 64 * 1024);
      assert.equal(res.status, 403, res.body);
    });

    it('an unauthenticated client that sends its whole 20 MB body gets the 401, and the server stays usable', async () => {
      const res = await fetch(`${base}/api/v1/mails/batch`, { method: 'POST', headers: { 'content-type': JSON_TYPE }, body: Buffer.alloc(20 * MB, '{') });
      assert.equal(res.status, 401);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'JUNIPER_ERR_UNAUTHENTICATED');
      assert.equal((await fetch(`${base}/healthz`)).status, 200);
    });

    it('accepts a 12 MB mail from a user with an API key and a 6 MB attachment from the compose form', async () => {
      const big = Buffer.alloc(9 * MB, 'a').toString('base64');
      const api = await fetch(`${base}/api/v1/mails`, {
        method: 'POST',
        headers: { authorization: `Bearer ${jane.apiKey}`, 'content-type': JSON_TYPE },
        body: JSON.stringify({ from: jane.email, to: ['customer@client.test'], subject: 'big', text: 'see attached', attachments: [{ filename: 'big.bin', contentType: 'application/octet-stream', contentBase64: big }] }),
      });
      assert.equal(api.status, 202, (await api.text()).slice(0, 500));

      const attachments = JSON.stringify([{ filename: 'report.pdf', contentType: 'application/pdf', contentBase64: Buffer.alloc(6 * MB, 'r').toString('base64') }]);
      const form = new URLSearchParams({ _csrf: jane.csrfToken, to: 'customer@client.test', cc: '', subject: 'report', text: 'attached', serverId: '', attachments });
      const compose = await fetch(`${base}/compose`, { method: 'POST', redirect: 'manual', headers: { cookie: jane.cookie, 'content-type': FORM, accept: 'text/html' }, body: form.toString() });
      assert.equal(compose.status, 303, (await compose.text()).slice(0, 2000));
      const id = Number(/^\/outbox\/(\d+)$/.exec(compose.headers.get('location') ?? '')?.[1]);
      const stored = await t.app.database.db.selectFrom('outgoing_attachments').select(['filename']).where('mail_id', '=', id).execute();
      assert.deepEqual(stored.map((a) => a.filename), ['report.pdf']);
    });

    it('answers 413 naming the limit: sign-in and setup 64 KB, other routes 1 MB, mail 31 MB (mail.message.max_bytes at its 25 MB)', async () => {
      const errorOf = (a: Answer) => (JSON.parse(a.body) as { error: { code: string; message: string } }).error;
      for (const path of ['/api/v1/session', '/api/v1/setup']) {
        const res = await answerBeforeBody(port, 'POST', path, { 'content-type': JSON_TYPE }, 100 * 1024, 0);
        assert.equal(res.status, 413, `${path}: ${res.body}`);
        assert.equal(errorOf(res).code, 'JUNIPER_ERR_TOO_LARGE');
        assert.equal(errorOf(res).message, `The request body is larger than POST ${path} accepts (at most 64 KB).`);
      }
      const settings = await answerBeforeBody(port, 'PUT', '/api/v1/settings', { 'content-type': JSON_TYPE, authorization: `Bearer ${admin.apiKey}` }, 2 * MB, 0);
      assert.equal(settings.status, 413, settings.body);
      assert.match(errorOf(settings).message, /PUT \/api\/v1\/settings accepts \(at most 1 MB\)/);
      const mail = await answerBeforeBody(port, 'POST', '/api/v1/mails', { 'content-type': JSON_TYPE, authorization: `Bearer ${jane.apiKey}` }, 31 * MB + 1, 0);
      assert.equal(mail.status, 413, mail.body);
      assert.equal(
        errorOf(mail).message,
        'The request body is larger than POST /api/v1/mails accepts (at most 31 MB). Send large files as links, or in several mails (an admin sets the largest mail: mail.message.max_bytes).',
      );
      // A body sent without Content-Length (chunked) is counted as it arrives.
      const chunked = await fetch(`${base}/api/v1/session`, { method: 'POST', headers: { 'content-type': JSON_TYPE }, body: new Blob([Buffer.alloc(100 * 1024, ' ')]).stream(), duplex: 'half' });
      assert.equal(chunked.status, 413);
      // The sign-in page says it on its error page.
      const login = await fetch(`${base}/login`, { method: 'POST', headers: { 'content-type': FORM, accept: 'text/html' }, body: `login=${'a'.repeat(100_000)}&password=x` });
      assert.equal(login.status, 413);
      assert.match(await login.text(), /larger than POST \/login accepts \(at most 64 KB\)/);
    });

    it('holds the mail routes to mail.message.max_bytes as it is now: raised to 35 MB a 32 MB mail is taken, lowered to 1 MB a 3 MB one is refused before it is read, chunked or not', async () => {
      const errorOf = (a: Answer) => (JSON.parse(a.body) as { error: { code: string; message: string } }).error;
      const setMax = async (value: string) => {
        const res = await fetch(`${base}/api/v1/parameters/mail.message.max_bytes`, { method: 'PUT', headers: { authorization: `Bearer ${admin.apiKey}`, 'content-type': JSON_TYPE }, body: JSON.stringify({ value }) });
        assert.equal(res.status, 200, await res.text());
      };
      // 24 MB of attachment is 32 MB of base64: over the default's 31 MB of body, within 35 MB's 43 MB.
      const body = JSON.stringify({ from: jane.email, to: ['customer@client.test'], subject: 'large', text: 'attached', attachments: [{ filename: 'large.bin', contentType: 'application/octet-stream', contentBase64: Buffer.alloc(24 * MB, 'l').toString('base64') }] });
      const post = (payload: string | ReadableStream) =>
        fetch(`${base}/api/v1/mails`, { method: 'POST', headers: { authorization: `Bearer ${jane.apiKey}`, 'content-type': JSON_TYPE }, body: payload, ...(typeof payload === 'string' ? {} : { duplex: 'half' }) });
      const refused = await post(body);
      assert.equal(refused.status, 413);
      assert.match(((await refused.json()) as { error: { message: string } }).error.message, /accepts \(at most 31 MB\)/);
      try {
        await setMax(String(35 * MB));
        const taken = await post(body);
        assert.equal(taken.status, 202, (await taken.text()).slice(0, 500));

        await setMax(String(1 * MB));
        const declared = await answerBeforeBody(port, 'POST', '/api/v1/mails', { 'content-type': JSON_TYPE, authorization: `Bearer ${jane.apiKey}` }, 3 * MB, 64 * 1024);
        assert.equal(declared.status, 413, declared.body);
        assert.match(errorOf(declared).message, /^The request body is larger than POST \/api\/v1\/mails accepts \(at most 2\.2 MB\)\./);
        const chunked = await post(new Blob([Buffer.alloc(3 * MB, ' ')]).stream());
        assert.equal(chunked.status, 413);
        assert.match(((await chunked.json()) as { error: { message: string } }).error.message, /at most 2\.2 MB/);
        const form = await answerBeforeBody(port, 'POST', '/compose', { 'content-type': FORM, accept: 'text/html', cookie: jane.cookie }, 3 * MB, 64 * 1024);
        assert.equal(form.status, 413, form.body.slice(0, 500));
        assert.match(form.body, /at most 2\.2 MB/);
        // A batch keeps its 64 MB: each mail's own limit applies inside it.
        const batch = await answerBeforeBody(port, 'POST', '/api/v1/mails/batch', { 'content-type': JSON_TYPE, authorization: `Bearer ${jane.apiKey}` }, 65 * MB, 0);
        assert.equal(batch.status, 413, batch.body);
        assert.equal(errorOf(batch).message, 'The request body is larger than POST /api/v1/mails/batch accepts (at most 64 MB). Send fewer mails per batch.');

        // A value stored above today's 150 MB ceiling (before there was one) counts as the ceiling, not as unset.
        await t.app.database.db.updateTable('parameters').set({ value: String(200 * MB) }).where('key', '=', 'mail.message.max_bytes').execute();
        await new Promise((r) => setTimeout(r, SNAPSHOT_TTL_MS + 20));
        const ceiling = await answerBeforeBody(port, 'POST', '/api/v1/mails', { 'content-type': JSON_TYPE, authorization: `Bearer ${jane.apiKey}` }, 190 * MB, 0);
        assert.equal(ceiling.status, 413, ceiling.body);
        assert.match(errorOf(ceiling).message, /accepts \(at most 181 MB\)/);
      } finally {
        const unset = await fetch(`${base}/api/v1/parameters/mail.message.max_bytes`, { method: 'DELETE', headers: { authorization: `Bearer ${admin.apiKey}` } });
        assert.ok(unset.status < 300, await unset.text());
      }
      const beyond = await fetch(`${base}/api/v1/parameters/mail.message.max_bytes`, { method: 'PUT', headers: { authorization: `Bearer ${admin.apiKey}`, 'content-type': JSON_TYPE }, body: JSON.stringify({ value: String(150 * MB + 1) }) });
      assert.equal(beyond.status, 400);
      assert.match(((await beyond.json()) as { error: { message: string } }).error.message, /from 1024 to 157286400 \(150 MB, Exchange Online's largest\)/);
    });

    it('a chunked mail body refused unread (an unsupported Content-Type) is discarded: the next request on the connection is answered', async () => {
      const answers = await new Promise<string>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1');
        let received = '';
        const waiting = setTimeout(() => {
          socket.destroy();
          reject(new Error(`no second answer on the connection: ${JSON.stringify(received.slice(0, 800))}`));
        }, 10_000);
        const chunk = (data: Buffer) => Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`), data, Buffer.from('\r\n')]);
        socket.on('connect', () => {
          socket.write(['POST /api/v1/mails HTTP/1.1', 'host: 127.0.0.1', 'content-type: application/x-unknown', 'transfer-encoding: chunked', `authorization: Bearer ${jane.apiKey}`, '', ''].join('\r\n'));
          socket.write(chunk(Buffer.alloc(64 * 1024, 'x')));
        });
        socket.on('data', (d: Buffer) => {
          received += d.toString('latin1');
          if (/^HTTP\/1\.1 4\d\d/.test(received) && !received.includes('GET-SENT')) {
            received += 'GET-SENT';
            // The rest of the body, its end, and a second request on the same connection.
            socket.write(Buffer.concat([chunk(Buffer.alloc(64 * 1024, 'y')), Buffer.from('0\r\n\r\n'), Buffer.from('GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n')]));
          }
          if (/GET-SENT[\s\S]*HTTP\/1\.1 200/.test(received)) {
            clearTimeout(waiting);
            socket.destroy();
            resolve(received);
          }
        });
        socket.on('error', (e) => {
          clearTimeout(waiting);
          reject(e);
        });
      });
      assert.match(answers, /^HTTP\/1\.1 400 [\s\S]*"Unsupported Media Type"/);
      assert.match(answers, /GET-SENT[\s\S]*HTTP\/1\.1 200/);
    });

    it(`refuses a form of more than ${FORM_MAX_FIELDS} fields with 413, and takes one of ${FORM_MAX_FIELDS}`, async () => {
      const post = (fields: number) =>
        fetch(`${base}/account/api-keys`, {
          method: 'POST',
          redirect: 'manual',
          headers: { cookie: jane.cookie, 'content-type': FORM, accept: 'text/html' },
          body: [`_csrf=${jane.csrfToken}`, 'name=many', ...Array.from({ length: fields - 2 }, (_, i) => `k${i}=1`)].join('&'),
        });
      const many = await post(FORM_MAX_FIELDS + 1);
      assert.equal(many.status, 413);
      assert.match(await many.text(), new RegExp(`more than ${FORM_MAX_FIELDS} fields`));
      const enough = await post(FORM_MAX_FIELDS);
      assert.notEqual(enough.status, 413);
      assert.ok(enough.status < 500, String(enough.status));
    });
  });
}
