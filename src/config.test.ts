import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig, parseTrustProxy } from './config.js';

describe('JUNIPER_TRUST_PROXY', () => {
  it('maps each documented form to Fastify trustProxy, and refuses what it does not understand', () => {
    const table: [string | undefined, unknown][] = [
      [undefined, false],
      ['', false],
      ['none', false],
      ['loopback', ['loopback']],
      ['10.0.0.5, 192.168.0.0/16 ,fd00::/8', ['10.0.0.5', '192.168.0.0/16', 'fd00::/8']],
      ['Loopback,10.0.0.1', ['loopback', '10.0.0.1']],
    ];
    for (const [raw, expected] of table) assert.deepEqual(parseTrustProxy(raw), expected, String(raw));
    for (const bad of ['true', '0', '1', '2', '10.0.0.0/33', 'proxy.example.com', '10.0.0.1/8/1', '*']) {
      const got = parseTrustProxy(bad);
      assert.ok(typeof got === 'string' && got.startsWith('!'), `${bad} → ${String(got)}`);
    }
  });

  it('is read by loadConfig, unset meaning no proxy is trusted', () => {
    assert.equal(loadConfig({}).trustProxy, false);
    assert.deepEqual(loadConfig({ JUNIPER_TRUST_PROXY: '127.0.0.1' }).trustProxy, ['127.0.0.1']);
    assert.throws(() => loadConfig({ JUNIPER_TRUST_PROXY: 'true' }), /JUNIPER_TRUST_PROXY/);
  });
});

describe('JUNIPER_PARSE_WORKERS', () => {
  it('is absent unless set (the pool then sizes itself by the cores), takes 0 to 16, and refuses anything else', () => {
    assert.equal(loadConfig({}).fetch.parseWorkers, undefined);
    assert.equal(loadConfig({ JUNIPER_PARSE_WORKERS: '0' }).fetch.parseWorkers, 0);
    assert.equal(loadConfig({ JUNIPER_PARSE_WORKERS: '3' }).fetch.parseWorkers, 3);
    for (const bad of ['-1', '17', '1.5', 'many']) assert.throws(() => loadConfig({ JUNIPER_PARSE_WORKERS: bad }), /JUNIPER_PARSE_WORKERS/, bad);
  });
});

describe('JUNIPER_PARSE_BUDGET_SECONDS', () => {
  it('is 20 s unless set, takes 0 (no budget) to 3600, and refuses anything else', () => {
    assert.equal(loadConfig({}).fetch.parseBudgetMs, 20_000);
    assert.equal(loadConfig({ JUNIPER_PARSE_BUDGET_SECONDS: '0' }).fetch.parseBudgetMs, 0);
    assert.equal(loadConfig({ JUNIPER_PARSE_BUDGET_SECONDS: '45' }).fetch.parseBudgetMs, 45_000);
    for (const bad of ['-1', '3601', '1.5', 'long']) assert.throws(() => loadConfig({ JUNIPER_PARSE_BUDGET_SECONDS: bad }), /JUNIPER_PARSE_BUDGET_SECONDS/, bad);
  });
});
