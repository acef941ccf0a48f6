import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addressPeopleUse, browserHostname, connectElsewhere, ignoredBaseUrlEnv } from './public-address.js';

describe('addressPeopleUse: the address printed at start', () => {
  const cases: [string, string | undefined, string, string][] = [
    ['web.base.url wins', 'https://mail.example.com', '127.0.0.1', 'https://mail.example.com'],
    ['127.0.0.1 → localhost (Microsoft accepts http only there)', undefined, '127.0.0.1', 'http://localhost:8080'],
    ['any 127.x', undefined, '127.0.1.1', 'http://localhost:8080'],
    ['::1', undefined, '::1', 'http://localhost:8080'],
    ['all interfaces', undefined, '0.0.0.0', 'http://localhost:8080'],
    ['all IPv6 interfaces', undefined, '::', 'http://localhost:8080'],
    ['another host stays', undefined, '10.0.0.5', 'http://10.0.0.5:8080'],
    ['an IPv6 host in brackets', undefined, 'fd00::5', 'http://[fd00::5]:8080'],
  ];
  for (const [name, stored, host, expected] of cases) it(name, () => assert.equal(addressPeopleUse(stored, host, 8080), expected));
});

describe('ignoredBaseUrlEnv: JUNIPER_BASE_URL the stored parameter overrides', () => {
  const cases: [string, string | undefined, string | undefined, string | null][] = [
    ['no variable', undefined, 'http://localhost:8080', null],
    ['nothing stored yet (it seeds)', 'https://mail.example.com', undefined, null],
    ['the same', 'https://mail.example.com', 'https://mail.example.com', null],
    ['the same but for case and a trailing slash', 'https://Mail.Example.com/', 'https://mail.example.com', null],
    ['different', 'https://mail.example.com', 'http://localhost:8080', 'https://mail.example.com'],
  ];
  for (const [name, env, stored, expected] of cases) it(name, () => assert.equal(ignoredBaseUrlEnv(env, stored), expected));
});

describe('browserHostname and connectElsewhere: where Connect must be clicked', () => {
  it('prefers the Origin the browser sent over a Host a proxy may have rewritten', () => {
    assert.equal(browserHostname('https://Mail.example.com', '127.0.0.1:8080'), 'mail.example.com');
    assert.equal(browserHostname(undefined, '127.0.0.1:8080'), '127.0.0.1');
    assert.equal(browserHostname('null', '[::1]:8080'), '[::1]');
  });
  const cases: [string, string | undefined, string, string | null][] = [
    ['web.base.url unset', undefined, '127.0.0.1', null],
    ['the same host', 'http://localhost:8080', 'localhost', null],
    ['the same host through a proxy on another port (cookies ignore ports)', 'https://mail.example.com', 'mail.example.com', null],
    ['127.0.0.1 while web.base.url is localhost', 'http://localhost:8080', '127.0.0.1', 'http://localhost:8080/outgoing-servers/3'],
    ['another name', 'https://mail.example.com', 'juniper.internal', 'https://mail.example.com/outgoing-servers/3'],
  ];
  for (const [name, base, hostname, expected] of cases) it(name, () => assert.equal(connectElsewhere(base, hostname, '/outgoing-servers/3'), expected));
});
