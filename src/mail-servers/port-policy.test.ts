import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decidePort, DEFAULT_ALLOWED_PORTS, formatPortList, parsePortList, portAllowed } from './port-policy.js';

describe('parsePortList', () => {
  it('reads ports and ranges, sorted, with overlapping and adjacent ranges joined', () => {
    assert.deepEqual(parsePortList(' 993, 25 ,2525-2530, 2531 , 2529-2540, 143,'), [
      { from: 25, to: 25 },
      { from: 143, to: 143 },
      { from: 993, to: 993 },
      { from: 2525, to: 2540 },
    ]);
    assert.equal(formatPortList(parsePortList('587-587, 1-10, 5')), '1-10, 587');
  });
  it('is empty for an unset or blank value', () => {
    assert.deepEqual(parsePortList(null), []);
    assert.deepEqual(parsePortList(' , '), []);
  });
  it('keeps the default as it is written', () => assert.equal(formatPortList(parsePortList(DEFAULT_ALLOWED_PORTS)), DEFAULT_ALLOWED_PORTS));
  for (const bad of ['0', '65536', '-5', '5-', '10-5', '1-2-3', '587a', '0x24b', '5 87', '1e3', '+25']) {
    it(`refuses ${JSON.stringify(bad)}, naming it`, () => assert.throws(() => parsePortList(`25, ${bad}`), new RegExp(`${JSON.stringify(bad).replace(/[+]/g, '\\+')} is not a port`)));
  }
});

describe('portAllowed', () => {
  const list = parsePortList('25, 587, 2525-2530');
  const table: [number, boolean][] = [
    [25, true],
    [587, true],
    [2525, true],
    [2528, true],
    [2530, true],
    [24, false],
    [26, false],
    [2531, false],
    [22, false],
    [8080, false],
  ];
  for (const [port, expected] of table) it(`${port}: ${expected ? 'allowed' : 'refused'}`, () => assert.equal(portAllowed(port, list), expected));
  it('allows the mail ports by default, and nothing else below 1024 but them', () => {
    const defaults = parsePortList(DEFAULT_ALLOWED_PORTS);
    for (const port of [25, 143, 465, 587, 993, 2525]) assert.ok(portAllowed(port, defaults), String(port));
    for (const port of [22, 80, 110, 443, 995, 3306, 5432, 6379, 8080]) assert.ok(!portAllowed(port, defaults), String(port));
  });
});

describe('decidePort', () => {
  it('names the server, the port, the allowed ports and the parameter, and says to use its protocol\'s usual ports', () => {
    const d = decidePort(8080, parsePortList(DEFAULT_ALLOWED_PORTS), 'outgoing mail server "mine" (id 3)', 'smtp');
    assert.ok(!d.ok);
    assert.equal(
      d.reason,
      'The outgoing mail server "mine" (id 3) uses port 8080, which a server of a user other than an admin may not use (allowed: 25, 143, 465, 587, 993, 2525). ' +
        'Use 587 (SMTP submission) or 465 (SMTP over TLS), or ask an admin to add port 8080 to the system parameter mail.server.allowed_ports.',
    );
    const imap = decidePort(22, parsePortList(DEFAULT_ALLOWED_PORTS), 'incoming mail server "box" (id 4)', 'imap');
    assert.ok(!imap.ok);
    assert.match(imap.reason, /Use 993 \(IMAP over TLS\) or 143 \(IMAP\), or ask/);
    const unknown = decidePort(22, parsePortList(DEFAULT_ALLOWED_PORTS));
    assert.ok(!unknown.ok);
    assert.match(unknown.reason, /Use 587 \(SMTP submission\) or 993 \(IMAP over TLS\), or ask/);
  });
  it('suggests only ports the list allows', () => {
    const d = decidePort(25, parsePortList('2525'));
    assert.ok(!d.ok);
    assert.match(d.reason, /\(allowed: 2525\)\. Ask an admin to add port 25 to the system parameter mail\.server\.allowed_ports\.$/);
  });
  it('accepts a listed port', () => assert.deepEqual(decidePort(2526, parsePortList('2525-2530')), { ok: true }));
});
