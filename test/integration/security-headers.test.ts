// Every page and API answer carries the framing and content policy (issue 8, hole 7): walked from the route
// table as the admin, with real ids, plus API answers, redirects and errors. The message HTML iframe keeps its
// own sandboxed policy that only Juniper's inbox page may frame. SQLite: headers involve no SQL.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { PAGE_CSP } from '../../src/http/security-headers.js';
import { MESSAGE_HTML_CSP } from '../../src/ui/inbox-page.js';
import { startWorld, type World } from '../helpers/world.js';

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
      assert.ok(res.statusCode < 500, `${url}: ${res.statusCode}`);
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
});
