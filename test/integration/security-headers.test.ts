// Every page and API answer carries the framing and content policy (issue 8, hole 7): walked from the route
// table as the admin, with real ids, plus API answers, redirects and errors. The message HTML iframe keeps its
// own sandboxed policy that only Juniper's inbox page may frame. SQLite: headers involve no SQL.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { DOWNLOAD_CSP } from '../../src/http/downloads.js';
import { PAGE_CSP } from '../../src/http/security-headers.js';
import { MESSAGE_HTML_CSP } from '../../src/ui/inbox-page.js';
import { MAILBOX, startWorld, type World } from '../helpers/world.js';

function assertPagePolicy(res: LightMyRequestResponse, label: string): void {
  const csp = String(res.headers['content-security-policy']);
  assert.equal(csp, PAGE_CSP, label);
  assert.match(csp, /frame-ancestors 'none'/, label);
  assert.match(csp, /default-src 'self'/, label);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, label);
  assert.equal(res.headers['x-frame-options'], 'DENY', label);
  assert.equal(res.headers['x-content-type-options'], 'nosniff', label);
  assert.equal(res.headers['referrer-policy'], 'same-origin', label);
}

describe('security headers on every page and API answer', () => {
  let w: World;
  before(async () => {
    w = await startWorld('sqlite');
  });
  after(async () => w.close());

  const get = (url: string, cookie = w.admin.session.cookie) => w.http.inject({ url, headers: { cookie, accept: 'text/html' } });

  it('sends frame-ancestors none, X-Frame-Options DENY, nosniff and Referrer-Policy on every GET page of the route table', async () => {
    const pages = w.http.declaredRoutes.filter((r) => r.method === 'GET' && !r.url.startsWith('/api/') && r.url !== '/inbox/:id/html');
    assert.ok(pages.length >= 15, `${pages.length} pages`);
    const mailId = await w.freshMail(w.jane);
    for (const route of pages) {
      const url = route.url
        .replace('/outgoing-servers/:id', `/outgoing-servers/${w.ids.outgoing}`)
        .replace('/incoming-servers/:id', `/incoming-servers/${w.ids.incoming}`)
        .replace('/inbox/:id', `/inbox/${w.ids.message}`)
        .replace('/outbox/:id', `/outbox/${mailId}`);
      assert.doesNotMatch(url, /:/, `no fixture for ${route.url}`);
      const res = await get(url);
      // /readyz answers 503 by design here: no worker process runs in this test.
      assert.ok(res.statusCode < 500 || url === '/readyz', `${url}: ${res.statusCode}`);
      assertPagePolicy(res, `${url} (${res.statusCode})`);
      if (String(res.headers['content-type']).startsWith('text/html')) {
        // The policy forbids inline script and style: the pages must not need any.
        assert.doesNotMatch(res.body, /<script(?![^>]*\ssrc=)[^>]*>/i, `${url}: inline <script>`);
        assert.doesNotMatch(res.body, /\son[a-z]+=["']/i, `${url}: inline event handler`);
        assert.doesNotMatch(res.body, /\sstyle=["']|<style/i, `${url}: inline style`);
      }
    }
  });

  it('sends the same headers on API answers, redirects, 401s and 404s', async () => {
    const answers = [
      await w.as(w.admin, { url: '/api/v1/settings' }),
      await w.as(null, { url: '/api/v1/settings' }),
      await w.as(w.admin, { url: '/api/v1/nothing-here' }),
      await w.http.inject({ url: '/', headers: { accept: 'text/html' } }),
      await w.as(w.john, { url: `/api/v1/messages/${w.ids.message}` }),
    ];
    assert.deepEqual(answers.map((r) => r.statusCode), [200, 401, 404, 302, 404]);
    for (const res of answers) assertPagePolicy(res, `${res.statusCode} ${res.body.slice(0, 80)}`);
  });

  it('keeps the message iframe on its own sandboxed policy, frameable by Juniper itself only', async () => {
    const res = await get(`/inbox/${w.ids.message}/html`);
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-security-policy'], MESSAGE_HTML_CSP);
    assert.match(String(res.headers['content-security-policy']), /frame-ancestors 'self'/);
    assert.match(String(res.headers['content-security-policy']), /^sandbox;/);
    assert.equal(res.headers['x-frame-options'], 'SAMEORIGIN');
    assert.equal(res.headers['referrer-policy'], 'no-referrer');
    const inbox = await get(`/inbox/${w.ids.message}`);
    assert.match(inbox.body, /<iframe[^>]+src="\/inbox\/\d+\/html"/, 'the inbox page frames it (frame-src self)');
    assert.match(String(inbox.headers['content-security-policy']), /frame-src 'self'/);
  });

  it('serves received attachments as inert downloads: only image/png, jpeg, gif, PDF and text/plain keep their type; raw messages too', async () => {
    const sent: [string, string, string][] = [
      ['app.js', 'text/javascript', 'alert(document.domain)'],
      ['page.html', 'text/html', '<script>alert(1)</script>'],
      ['logo.svg', 'image/svg+xml', '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'],
      ['style.css', 'text/css', 'body{background:red}'],
      ['data.json', 'application/json', '{"a":1}'],
      ['thing.bin', 'application/x-made-up', 'bytes'],
      ['dot.png', 'image/png', 'png bytes'],
      ['photo.jpg', 'image/jpeg', 'jpeg bytes'],
      ['anim.gif', 'image/gif', 'gif bytes'],
      ['doc.pdf', 'application/pdf', '%PDF-1.4'],
      ['notes.txt', 'text/plain', 'plain notes'],
    ];
    const expected: Record<string, string> = {
      'dot.png': 'image/png', 'photo.jpg': 'image/jpeg', 'anim.gif': 'image/gif', 'doc.pdf': 'application/pdf', 'notes.txt': 'text/plain; charset=utf-8',
    };
    const parts = sent.flatMap(([name, type, body]) => ['--mix', `Content-Type: ${type}; name="${name}"`, `Content-Disposition: attachment; filename="${name}"`, 'Content-Transfer-Encoding: base64', '', Buffer.from(body).toString('base64')]);
    await w.dovecot.deliver(MAILBOX, ['From: customer@client.test', `To: ${MAILBOX}`, 'Subject: active attachments', 'Message-ID: <active-1@client.test>', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="mix"', '', '--mix', 'Content-Type: text/plain', '', 'See attached.', ...parts, '--mix--', ''].join('\r\n'));
    assert.equal((await w.as(w.admin, { method: 'POST', url: `/api/v1/incoming-servers/${w.ids.incoming}/fetch?wait=true` })).statusCode, 200);
    const listed = (await w.as(w.jane, { url: `/api/v1/messages?serverId=${w.ids.incoming}` })).json<{ id: number; subject: string }[]>();
    const id = listed.find((m) => m.subject === 'active attachments')!.id;
    const detail = (await w.as(w.jane, { url: `/api/v1/messages/${id}` })).json<{ attachments: { filename: string; contentType: string; url: string }[] }>();
    assert.equal(detail.attachments.length, sent.length);

    const assertInert = (res: LightMyRequestResponse, label: string) => {
      assert.equal(res.statusCode, 200, label);
      assert.equal(res.headers['content-security-policy'], DOWNLOAD_CSP, label);
      assert.match(DOWNLOAD_CSP, /^sandbox; default-src 'none'/);
      assert.equal(res.headers['x-content-type-options'], 'nosniff', label);
      assert.equal(res.headers['cross-origin-resource-policy'], 'same-origin', label);
      assert.match(String(res.headers['content-disposition']), /^attachment; /, label);
    };
    for (const a of detail.attachments) {
      const [, type, body] = sent.find(([name]) => name === a.filename)!;
      assert.equal(a.contentType, type, 'the API still names the type the sender gave');
      // The inbox page links these URLs: a browser fetches them with the session cookie.
      const res = await get(a.url, w.jane.session.cookie);
      assertInert(res, a.filename);
      assert.equal(res.headers['content-type'], expected[a.filename] ?? 'application/octet-stream', a.filename);
      assert.equal(res.body, body, `${a.filename}: the bytes as sent`);
    }
    const raw = await w.as(w.jane, { url: `/api/v1/messages/${id}/raw` });
    assertInert(raw, 'raw');
    assert.equal(raw.headers['content-type'], 'message/rfc822');
  });
});
