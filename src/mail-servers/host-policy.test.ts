import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { allowedBy, decideHost, ownAddressKey, parseAllowList, parseIp, refusedKind } from './host-policy.js';

describe('refusedKind: which addresses a non-admin server may not reach', () => {
  const table: [string, string | null][] = [
    ['127.0.0.1', 'loopback'],
    ['127.255.1.2', 'loopback'],
    ['0.0.0.0', 'unspecified, "this network"'],
    ['10.0.0.1', 'private, RFC 1918'],
    ['172.16.0.1', 'private, RFC 1918'],
    ['172.31.255.255', 'private, RFC 1918'],
    ['172.32.0.1', null],
    ['192.168.1.1', 'private, RFC 1918'],
    ['100.64.0.1', 'carrier-grade NAT, RFC 6598'],
    ['100.127.255.255', 'carrier-grade NAT, RFC 6598'],
    ['100.128.0.1', null],
    ['169.254.169.254', 'link-local, where cloud metadata services answer'],
    ['224.0.0.1', 'multicast'],
    ['255.255.255.255', 'reserved, broadcast included'],
    ['198.18.0.1', 'reserved for benchmarking'],
    ['8.8.8.8', null],
    ['93.184.216.34', null],
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['[::1]', 'loopback'],
    ['0:0:0:0:0:0:0:1', 'loopback'],
    ['::ffff:127.0.0.1', 'IPv4-mapped loopback'],
    ['::ffff:7f00:1', 'IPv4-mapped loopback'],
    ['[::ffff:169.254.169.254]', 'IPv4-mapped link-local, where cloud metadata services answer'],
    ['::ffff:8.8.8.8', null],
    ['::127.0.0.1', 'IPv4-compatible loopback'],
    ['::ffff:0:7f00:1', 'IPv4-translated loopback'],
    ['::ffff:0:127.0.0.1', 'IPv4-translated loopback'],
    ['0:0:0:0:ffff:0:a00:1', 'IPv4-translated private, RFC 1918'],
    ['[::ffff:0:169.254.169.254]', 'IPv4-translated link-local, where cloud metadata services answer'],
    ['::ffff:0:808:808', null],
    ['64:ff9b::10.0.0.1', 'NAT64 private, RFC 1918'],
    ['2002:7f00:1::', '6to4 loopback'],
    ['2002:0808:0808::', null],
    ['fc00::1', 'unique-local, private'],
    ['fd12:3456::1', 'unique-local, private'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['ff02::1', 'multicast'],
    ['2001:db8::1', 'reserved for documentation'],
    ['2606:4700::1111', null],
    ['not-an-ip', 'not an IP address'],
    ['1.2.3', 'not an IP address'],
    ['1.2.3.256', 'not an IP address'],
    ['1:2:3:4:5:6:7:8:9', 'not an IP address'],
  ];
  for (const [address, expected] of table) {
    it(`${address} → ${expected ?? 'public'}`, () => assert.equal(refusedKind(address), expected));
  }
});

describe('parseAllowList', () => {
  it('reads host names, addresses and CIDR ranges, trimming and lower-casing', () => {
    const list = parseAllowList(' Mail.Internal.example. , 127.0.0.1, 10.0.0.0/8, fd00::/8 ,');
    assert.deepEqual(
      list.map((e) => (e.kind === 'host' ? `host ${e.name}` : `ip${e.version} /${e.prefix}`)),
      ['host mail.internal.example', 'ip4 /32', 'ip4 /8', 'ip6 /8'],
    );
  });
  it('is empty for an unset or blank value', () => {
    assert.deepEqual(parseAllowList(null), []);
    assert.deepEqual(parseAllowList(' , '), []);
  });
  for (const bad of ['10.0.0.0/33', 'fd00::/129', '10.0.0.0/8/1', 'exa mple', 'host.example/24', '10.0.0.0/x']) {
    it(`refuses ${JSON.stringify(bad)}`, () => assert.throws(() => parseAllowList(bad)));
  }
});

describe('allowedBy', () => {
  const list = parseAllowList('sink.test, 127.0.0.1, 10.1.0.0/16, fd00::/8');
  const table: [string, string, boolean][] = [
    ['sink.test', '192.168.9.9', true],
    ['SINK.test.', '127.0.0.2', true],
    ['other.test', '127.0.0.1', true],
    ['other.test', '127.0.0.2', false],
    ['other.test', '::ffff:127.0.0.1', true],
    ['other.test', '10.1.200.3', true],
    ['other.test', '10.2.0.1', false],
    ['other.test', 'fd12::1', true],
    ['other.test', 'fe80::1', false],
    ['sink.test.evil', '127.0.0.1', true],
    ['sink.test.evil', '127.0.0.3', false],
  ];
  for (const [host, address, expected] of table) {
    it(`${host} at ${address}: ${expected ? 'allowed' : 'not allowed'}`, () => assert.equal(allowedBy(host, address, list) !== undefined, expected));
  }
});

describe('decideHost', () => {
  it('accepts public addresses and connects to the first one', () => {
    assert.deepEqual(decideHost('smtp.example.com', ['93.184.216.34', '2606:2800::1'], []), { ok: true, address: '93.184.216.34' });
  });
  it('refuses a name when any of its addresses is private, naming host and parameter but not the address (no DNS oracle)', () => {
    const d = decideHost('mixed.example.com', ['93.184.216.34', '127.0.0.1'], []);
    assert.equal(d.ok, false);
    assert.ok(!d.ok);
    assert.equal(d.address, '127.0.0.1');
    assert.match(d.reason, /mixed\.example\.com resolves to an address that is not public/);
    assert.doesNotMatch(d.reason, /127\.0\.0\.1|loopback/, 'what an internal name resolves to stays unsaid');
    assert.match(d.reason, /mail\.server\.allowed_private_hosts/);
  });
  it('names a literal address without "resolves to"', () => {
    const d = decideHost('169.254.169.254', ['169.254.169.254'], []);
    assert.ok(!d.ok);
    assert.match(d.reason, /host 169\.254\.169\.254 is not a public address \(link-local/);
  });
  it("refuses a public address of this machine's own interfaces (a VPS's), by name, typed in or IPv4-mapped; the allow-list admits it", () => {
    const own = new Set([ownAddressKey('93.184.216.34'), ownAddressKey('2606:2800:220:1::5')]);
    const what = 'mail server';
    assert.equal(decideHost('93.184.216.34', ['93.184.216.34'], [], what, own).ok, false);
    assert.match((decideHost('93.184.216.34', ['93.184.216.34'], [], what, own) as { reason: string }).reason, /is not a public address \(an address of this machine\)/);
    assert.equal(decideHost('vps.example.com', ['93.184.216.34'], [], what, own).ok, false);
    for (const written of ['::ffff:93.184.216.34', '::ffff:5db8:d822', '0:0:0:0:0:ffff:5db8:d822', '::FFFF:5DB8:D822', '::93.184.216.34', '::ffff:0:93.184.216.34', '::ffff:0:5db8:d822']) {
      assert.equal(decideHost(written, [written], [], what, own).ok, false, written);
    }
    assert.equal(decideHost('2606:2800:0220:0001:0000:0000:0000:0005', ['2606:2800:0220:0001:0000:0000:0000:0005'], [], what, own).ok, false, 'an own IPv6 address written out in full');
    assert.equal(decideHost('v6.example.com', ['2606:2800:220:1::5'], [], what, own).ok, false);
    assert.deepEqual(decideHost('other.example.com', ['93.184.216.35'], [], what, own), { ok: true, address: '93.184.216.35' });
    assert.deepEqual(decideHost('vps.example.com', ['93.184.216.34'], parseAllowList('93.184.216.34'), what, own), { ok: true, address: '93.184.216.34' });
  });
  it('admits a private address the allow-list names', () => {
    assert.deepEqual(decideHost('localhost', ['127.0.0.1'], parseAllowList('127.0.0.0/8')), { ok: true, address: '127.0.0.1' });
    assert.deepEqual(decideHost('localhost', ['::1', '127.0.0.1'], parseAllowList('localhost')), { ok: true, address: '::1' });
  });
  it('refuses a name that resolved to nothing', () => {
    assert.equal(decideHost('nothing.example', [], []).ok, false);
  });
  it('parseIp reads both families', () => {
    assert.deepEqual(parseIp('10.0.0.1'), { version: 4, bits: 0x0a000001n });
    assert.equal(parseIp('::1')?.bits, 1n);
    assert.equal(parseIp('example.com'), undefined);
  });
});
