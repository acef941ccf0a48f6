import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import addressparser from 'nodemailer/lib/addressparser';
import { domainOf, formatMailbox, isPlainAddrSpec, localPartOf, normaliseAddress, parseMailbox, parseWithAddressparser, toHeaderLine } from './address.js';
import type { Mailbox } from './address.js';

describe('parseMailbox', () => {
  const cases: Array<[string, string, Mailbox]> = [
    ['reads a display name and an address', 'John Doe <john@example.com>', { name: 'John Doe', address: 'john@example.com' }],
    ['reads a bare address with an empty name', 'john@example.com', { name: '', address: 'john@example.com' }],
    ['reads an address in angle brackets without a name', '<john@example.com>', { name: '', address: 'john@example.com' }],
    ['takes the address in <> when the quoted display name looks like an address', '"a@x.com" <z@q.com>', { name: 'a@x.com', address: 'z@q.com' }],
    ['takes the address in <> when an unquoted display name looks like an address', 'a@x.com <z@q.com>', { name: 'a@x.com', address: 'z@q.com' }],
    ['keeps a comma inside a quoted name as part of the name', '"Doe, John" <john@example.com>', { name: 'Doe, John', address: 'john@example.com' }],
    ['unescapes quotes and backslashes in a quoted name', '"J \\"Jo\\" D\\\\" <j@x.com>', { name: 'J "Jo" D\\', address: 'j@x.com' }],
    ['leaves an RFC 2047 encoded name encoded', '=?UTF-8?Q?J=C3=BCrgen?= <j@x.de>', { name: '=?UTF-8?Q?J=C3=BCrgen?=', address: 'j@x.de' }],
    ['keeps a Unicode name', 'Jürgen Müller <j@x.de>', { name: 'Jürgen Müller', address: 'j@x.de' }],
    ['keeps the case of the address for display', 'John <JOHN@Example.COM>', { name: 'John', address: 'JOHN@Example.COM' }],
    ['unfolds a folded header', 'John\r\n <john@x.com>', { name: 'John', address: 'john@x.com' }],
    ['keeps a quoted local part with an @ inside it quoted', '"john@x.com"@evil.com', { name: '', address: '"john@x.com"@evil.com' }],
    ['accepts an internationalised domain', 'jo@exämple.com', { name: '', address: 'jo@exämple.com' }],
  ];
  for (const [behaviour, input, expected] of cases) {
    it(behaviour, () => assert.deepEqual(parseMailbox(input), expected));
  }

  const invalid: Array<[string, string]> = [
    ['rejects an empty value', ''],
    ['rejects whitespace only', ' \r\n '],
    ['rejects a name without an address', 'John Doe'],
    ['rejects an empty address in brackets', 'John <>'],
    ['rejects two mailboxes', 'a@example.com, b@example.com'],
    ['rejects a group', 'team: a@example.com;'],
    ['rejects an injected header after a line break instead of reading it as part of the From', 'John <john@x.com>\r\nBcc: evil@x.com'],
    ['rejects an address without a domain', 'john@'],
    ['rejects a domain without a dot', 'john@localhost'],
    ['rejects a domain literal', 'john@[192.0.2.1]'],
    ['rejects an unquoted local part with specials', 'A <a@b.com;c@d.com>'],
    ['rejects a local part longer than 64 characters', `${'a'.repeat(65)}@example.com`],
  ];
  for (const [behaviour, input] of invalid) {
    it(behaviour, () => assert.equal(parseMailbox(input), undefined));
  }
});

describe('parseMailbox, the short way for plain addresses', () => {
  // A seeded generator, so a failure names an input that fails again.
  // mulberry32: 32-bit integer arithmetic throughout (a multiply in doubles past 2^53 falls into a short cycle).
  let seed = 20261203;
  const random = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
  const pick = (chars: string, max: number, min = 1) => Array.from({ length: min + Math.floor(random() * (max - min + 1)) }, () => chars[Math.floor(random() * chars.length)]).join('');
  const ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-";
  // Dots where they are allowed and where they are not (first, last, doubled); labels too long, empty, with
  // hyphens at their ends, an all-digit top level: the short way must refuse what addressparser's way refuses.
  const local = () => (random() < 0.8 ? Array.from({ length: 1 + Math.floor(random() * 3) }, () => pick(ATEXT, 12)).join('.') : pick(ATEXT + '..', 70));
  const domain = () => (random() < 0.8 ? Array.from({ length: 2 + Math.floor(random() * 3) }, () => pick('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-', random() < 0.05 ? 70 : 10)).join('.') : pick('abc0123456789-..', 20));
  const samples = [
    'john@example.com', 'JOHN@Example.COM', "o'neil@example.ie", 'a.b.c@d.e.f', '.a@b.com', 'a.@b.com', 'a..b@c.com', 'a@b', 'a@-b.com', 'a@b-.com',
    'a@b..com', 'a@b.123', 'a@.b.com', 'a@b.com.', "{x}|~#$%&'*+/=?^_`@q.io", `${'l'.repeat(65)}@x.com`, `a@${'d'.repeat(64)}.com`, `a@${'d.'.repeat(130)}com`,
    ...Array.from({ length: 20_000 }, () => `${local()}@${domain()}`),
  ];

  it('reads every generated plain address exactly as addressparser does', () => {
    let taken = 0;
    for (const value of samples) {
      assert.ok(isPlainAddrSpec(value), value);
      assert.deepEqual(parseMailbox(value), parseWithAddressparser(value), value);
      // checkRecipients reads a plain value as this one entry instead of asking addressparser for the list.
      assert.deepEqual(addressparser(value, { flatten: true }), [{ name: '', address: value }], value);
      if (parseMailbox(value)) taken++;
    }
    // Both kinds are in the sample, and the sample is what it says: addresses taken and refused, nearly all distinct.
    assert.ok(taken > 10_000 && taken < samples.length, `${taken} of ${samples.length} taken`);
    assert.ok(new Set(samples).size > 19_000, `${new Set(samples).size} distinct`);
  });

  it('leaves everything with a name, brackets, quotes, comments, spaces, lists or non-ASCII to addressparser', () => {
    for (const value of ['John <j@x.com>', '<j@x.com>', '"j"@x.com', 'j@x.com (J)', 'j @x.com', 'a@x.com,b@x.com', 'a@x.com;', 'g:a@x.com;', 'j@[1.2.3.4]', 'jö@x.com', 'j@exämple.com', 'a\b@x.com']) {
      assert.equal(isPlainAddrSpec(value), false, value);
    }
  });
});

describe('normaliseAddress', () => {
  const cases: Array<[string, string, string | undefined]> = [
    ['lower-cases the whole addr-spec', 'JOHN@Example.COM', 'john@example.com'],
    ['ignores the display name', '"Jane@Example.com" <Bob@Example.com>', 'bob@example.com'],
    ['converts an internationalised domain to its xn-- form', 'Jo@Exämple.com', 'jo@xn--exmple-cua.com'],
    ['keeps the quotes of a quoted local part', '"John Doe"@Example.com', '"john doe"@example.com'],
    ['is undefined for an unparsable value', 'not an address', undefined],
  ];
  for (const [behaviour, input, expected] of cases) {
    it(behaviour, () => assert.equal(normaliseAddress(input), expected));
  }
});

describe('domainOf and localPartOf', () => {
  const cases: Array<[string, string, string, string]> = [
    ['split a plain address', 'john@example.com', 'john', 'example.com'],
    ['split at the last @ so a quoted local part keeps its own @', '"a@b"@example.com', '"a@b"', 'example.com'],
    ['give the whole value as local part and no domain when there is no @', 'john', 'john', ''],
  ];
  for (const [behaviour, input, local, domain] of cases) {
    it(behaviour, () => {
      assert.equal(localPartOf(input), local);
      assert.equal(domainOf(input), domain);
    });
  }
});

describe('formatMailbox', () => {
  const cases: Array<[string, Mailbox, string]> = [
    ['gives a bare address when there is no name', { name: '', address: 'john@example.com' }, 'john@example.com'],
    ['leaves a plain name unquoted', { name: 'John Doe', address: 'john@example.com' }, 'John Doe <john@example.com>'],
    ['quotes a name that looks like an address', { name: 'a@x.com', address: 'z@q.com' }, '"a@x.com" <z@q.com>'],
    ['quotes a name with a comma', { name: 'Doe, John', address: 'j@x.com' }, '"Doe, John" <j@x.com>'],
    ['quotes a name with a period', { name: 'J. Doe', address: 'j@x.com' }, '"J. Doe" <j@x.com>'],
    ['escapes quotes and backslashes in a quoted name', { name: 'J "Jo" D\\', address: 'j@x.com' }, '"J \\"Jo\\" D\\\\" <j@x.com>'],
    ['leaves a Unicode name for nodemailer to encode', { name: 'Jürgen Müller', address: 'j@x.de' }, 'Jürgen Müller <j@x.de>'],
    ['leaves an encoded name as it is', { name: '=?UTF-8?Q?J=C3=BCrgen?=', address: 'j@x.de' }, '=?UTF-8?Q?J=C3=BCrgen?= <j@x.de>'],
    ['turns line breaks in a name into spaces', { name: 'John\r\nBcc: x@y.com', address: 'j@x.com' }, '"John Bcc: x@y.com" <j@x.com>'],
  ];
  for (const [behaviour, mailbox, expected] of cases) {
    it(behaviour, () => assert.equal(formatMailbox(mailbox), expected));
  }

  const quoted: Array<[string, Mailbox, string]> = [
    ['quotes even a plain name when asked to', { name: 'John Doe', address: 'n@example.com' }, '"John Doe" <n@example.com>'],
    ['never quotes encoded words, which clients would then not decode', { name: '=?UTF-8?B?SsO8cmdlbg==?=', address: 'n@x.de' }, '=?UTF-8?B?SsO8cmdlbg==?= <n@x.de>'],
    ['still gives a bare address without a name', { name: '', address: 'n@example.com' }, 'n@example.com'],
  ];
  for (const [behaviour, mailbox, expected] of quoted) {
    it(`with alwaysQuote, ${behaviour}`, () => assert.equal(formatMailbox(mailbox, { alwaysQuote: true }), expected));
  }

  it('round-trips through parseMailbox for names that need quoting', () => {
    for (const mailbox of [{ name: 'Doe, John "JD" \\ Jr.', address: 'j@x.com' }, { name: 'a@x.com', address: 'z@q.com' }]) {
      assert.deepEqual(parseMailbox(formatMailbox(mailbox)), mailbox);
    }
  });
});

describe('toHeaderLine', () => {
  it('turns CR, LF and other control characters into spaces and trims', () => {
    assert.equal(toHeaderLine(' a\r\nb\x00c\td '), 'a b c\td');
  });
});
