// Juniper behind a TLS reverse proxy, over real HTTP on loopback: whose X-Forwarded-For/-Proto count
// (JUNIPER_TRUST_PROXY), a sign-in throttle that no one can use to lock a named user out, and Secure cookies
// whenever web.base.url is https. Linux routes all of 127.0.0.0/8 to loopback, so "other addresses" are real
// peers (127.0.0.2, 127.0.0.3) rather than forged headers. Both databases.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { SignIn } from '../../src/users/sign-in.js';
import { MAX_DELAY_MS, SignInThrottle } from '../../src/users/sign-in-throttle.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';

const PROXY = '127.0.0.1';
const ATTACKER_PEER = '127.0.0.2';
const ADMIN_PEER = '127.0.0.3';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(port: number, method: string, path: string, options: { from?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, localAddress: options.from ?? PROXY, headers: options.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

const setCookies = (a: Answer): string[] => a.headers['set-cookie'] ?? [];

for (const dialect of dialects) {
  describe(`behind a reverse proxy (${dialect})`, () => {
    let t: TestApp;
    let port: number;
    let adminPassword: string;
    let delays: number[];

    before(async () => {
      t = await startTestApp(dialect, { trustProxy: [PROXY] });
      const server = await t.app.http();
      await server.listen({ port: 0, host: '127.0.0.1' });
      port = (server.server.address() as AddressInfo).port;
      adminPassword = (await t.createUser('admin', 'admin')).password;
    });
    after(async () => t.close());
    beforeEach(() => {
      // A fresh throttle per test; the slow-down is recorded instead of slept (its lengths are unit-tested).
      delays = [];
      t.app.services.signIn = new SignIn(t.app.services.users, new SignInThrottle(), async (ms) => delays.push(ms));
    });

    const signIn = (password: string, options: { from?: string; forwardedFor?: string; proto?: string } = {}) =>
      request(port, 'POST', '/api/v1/session', {
        from: options.from,
        headers: {
          'content-type': 'application/json',
          ...(options.forwardedFor ? { 'x-forwarded-for': options.forwardedFor } : {}),
          ...(options.proto ? { 'x-forwarded-proto': options.proto } : {}),
        },
        body: JSON.stringify({ login: 'admin', password }),
      });

    it('50 bad passwords for admin from one address do not stop the admin signing in from another', async () => {
      const statuses = new Set<number>();
      for (let i = 0; i < 50; i++) statuses.add((await signIn(`wrong-${i}`, { from: ATTACKER_PEER })).status);
      assert.deepEqual([...statuses].sort(), [401, 429], 'the attacker is refused after the first failures');
      assert.equal((await signIn(adminPassword, { from: ATTACKER_PEER })).status, 429, 'even the right password is refused from the attacker address');
      const admin = await signIn(adminPassword, { from: ADMIN_PEER });
      assert.equal(admin.status, 200, admin.body);
      assert.ok(delays.at(-1)! <= MAX_DELAY_MS, 'the admin was at most slowed down briefly');
    });

    it('behind the trusted proxy the throttle keys on the client in X-Forwarded-For, and https comes from X-Forwarded-Proto', async () => {
      for (let i = 0; i < 12; i++) await signIn(`wrong-${i}`, { forwardedFor: '203.0.113.9' });
      assert.equal((await signIn(adminPassword, { forwardedFor: '203.0.113.9' })).status, 429, 'that client is refused');
      const admin = await signIn(adminPassword, { forwardedFor: '198.51.100.7', proto: 'https' });
      assert.equal(admin.status, 200, 'another client behind the same proxy is not');
      const cookie = setCookies(admin).find((c) => c.startsWith('juniper_session='));
      assert.match(cookie ?? '', /; Secure/, 'the proxy said https: the cookie is Secure');
    });

    it('from a peer that is not the trusted proxy X-Forwarded-For and -Proto are ignored', async () => {
      for (let i = 0; i < 12; i++) await signIn(`wrong-${i}`, { from: ATTACKER_PEER, forwardedFor: `203.0.113.${i + 1}` });
      const forged = await signIn(adminPassword, { from: ATTACKER_PEER, forwardedFor: '198.51.100.7' });
      assert.equal(forged.status, 429, 'a forged X-Forwarded-For does not dodge the throttle');
      const plain = await signIn(adminPassword, { from: ADMIN_PEER, proto: 'https' });
      assert.equal(plain.status, 200);
      assert.doesNotMatch(setCookies(plain).join('\n'), /Secure/, 'a forged X-Forwarded-Proto does not count (web.base.url is not https)');
    });

    it('marks every cookie Secure when web.base.url is https, even for a plain-http request', async () => {
      const actor = { userId: null, label: 'test' };
      await t.app.services.parameters.set('web.base.url', 'https://juniper.example', actor);
      try {
        const session = await signIn(adminPassword, { from: ADMIN_PEER });
        assert.equal(session.status, 200);
        const sessionCookie = setCookies(session).find((c) => c.startsWith('juniper_session='))!;
        assert.match(sessionCookie, /; Secure/);
        assert.match(sessionCookie, /HttpOnly/);
        const cookie = sessionCookie.split(';')[0]!;
        const { csrfToken } = JSON.parse(session.body) as { csrfToken: string };

        const debug = await request(port, 'GET', '/login?debug=1', { from: ADMIN_PEER });
        const debugCookie = setCookies(debug).find((c) => c.startsWith('juniper_debug='));
        assert.match(debugCookie ?? '', /; Secure/, 'developer-mode cookie');

        const form = new URLSearchParams({ _csrf: csrfToken, customEmailServers: 'on', tenant: 'common', cloud: 'global' }).toString();
        const saved = await request(port, 'POST', '/settings', {
          from: ADMIN_PEER,
          headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', origin: 'https://juniper.example' },
          body: form,
        });
        const flash = setCookies(saved).find((c) => c.startsWith('juniper_flash='));
        assert.ok(flash, `the settings form set a flash message (${saved.status})`);
        assert.match(flash, /; Secure/, 'flash cookie');

        const out = await request(port, 'POST', '/logout', { from: ADMIN_PEER, headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: `_csrf=${csrfToken}` });
        assert.ok(setCookies(out).length > 0);
        for (const c of setCookies(out)) assert.match(c, /; Secure/, `cleared cookie ${c}`);
      } finally {
        await t.app.services.parameters.unset('web.base.url', actor);
      }
    });
  });
}
