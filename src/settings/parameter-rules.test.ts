import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppError } from '../lib/errors.js';
import {
  bounceAddress,
  catchallAddress,
  DEFAULT_OUTLOOK_ENDPOINT,
  defaultFromAddress,
  knownParameters,
  normaliseParameter,
  parseBoolean,
  toMailParameters,
  type MailParameters,
} from './parameter-rules.js';

type Case = [key: string, input: string, stored: string];
type Bad = [key: string, input: string, messagePart: string];

const accepted: Case[] = [
  ['web.base.url', 'https://mail.example.com', 'https://mail.example.com'],
  ['web.base.url', 'https://mail.example.com/', 'https://mail.example.com'],
  ['web.base.url', 'https://Mail.Example.com/juniper//', 'https://mail.example.com/juniper'],
  ['web.base.url', '  http://127.0.0.1:8080  ', 'http://127.0.0.1:8080'],
  ['mail.catchall.domain', 'example.com', 'example.com'],
  ['mail.catchall.domain', 'Example.COM', 'example.com'],
  ['mail.catchall.domain', 'mail-1.sub.example.co.uk', 'mail-1.sub.example.co.uk'],
  ['mail.catchall.domain', 'xn--bcher-kva.example', 'xn--bcher-kva.example'],
  ['mail.catchall.domain', 'bücher.example', 'xn--bcher-kva.example'],
  ['mail.default.from', 'notifications', 'notifications'],
  ['mail.default.from', 'no-reply.team', 'no-reply.team'],
  ['mail.default.from', 'notifications@Example.COM', 'notifications@example.com'],
  ['mail.bounce.alias', 'bounce', 'bounce'],
  ['mail.bounce.alias', 'bounce+tag', 'bounce+tag'],
  ['mail.catchall.alias', 'catchall', 'catchall'],
  ['mass_mailing.outgoing_mail_server', 'true', 'true'],
  ['mass_mailing.outgoing_mail_server', 'True', 'true'],
  ['mass_mailing.outgoing_mail_server', '1', 'true'],
  ['mass_mailing.outgoing_mail_server', 'yes', 'true'],
  ['mass_mailing.outgoing_mail_server', 'False', 'false'],
  ['mass_mailing.outgoing_mail_server', '0', 'false'],
  ['mass_mailing.outgoing_mail_server', 'no', 'false'],
  ['mass_mailing.mail_server_id', '7', '7'],
  ['mass_mailing.mail_server_id', '2147483647', '2147483647'],
  ['microsoft_outlook.endpoint', DEFAULT_OUTLOOK_ENDPOINT, DEFAULT_OUTLOOK_ENDPOINT],
  ['microsoft_outlook.endpoint', 'https://login.microsoftonline.com/common/oauth2/v2.0', DEFAULT_OUTLOOK_ENDPOINT],
  ['microsoft_outlook.endpoint', 'https://login.microsoftonline.com/common/oauth2/v2.0//', DEFAULT_OUTLOOK_ENDPOINT],
  ['microsoft_outlook.endpoint', 'http://127.0.0.1:9000/tenant', 'http://127.0.0.1:9000/tenant/'],
  ['microsoft_outlook.endpoint', 'http://localhost:9000', 'http://localhost:9000/'],
  ['microsoft_outlook.endpoint', 'http://[::1]:9000/x/', 'http://[::1]:9000/x/'],
  ['mail.server.allowed_ports', '25, 465, 587, 2525, 143, 993', '25, 143, 465, 587, 993, 2525'],
  ['mail.server.allowed_ports', ' 587 ,, 2525 - 2530, 2528-2600, 993,', '587, 993, 2525-2600'],
  ['mail.server.allowed_ports', '1-65535', '1-65535'],
  ['my.free-key_1', 'anything at all\twith a tab', 'anything at all\twith a tab'],
  ['my.free-key_1', '', ''],
  ['x', '  kept verbatim  ', '  kept verbatim  '],
];

const rejected: Bad[] = [
  ['web.base.url', 'mail.example.com', 'web.base.url must be an http:// or https:// address'],
  ['web.base.url', 'ftp://mail.example.com', 'web.base.url must be an http:// or https://'],
  ['web.base.url', 'https://mail.example.com/?a=1', 'without ?query or #fragment'],
  ['web.base.url', 'https://mail.example.com/#top', 'without ?query or #fragment'],
  ['web.base.url', 'https://mail.example.com?', 'without ?query'],
  ['web.base.url', 'https://user:pw@mail.example.com', 'web.base.url must be'],
  ['mail.catchall.domain', 'example', 'mail.catchall.domain must be a domain name'],
  ['mail.catchall.domain', '-example.com', 'mail.catchall.domain must be a domain name'],
  ['mail.catchall.domain', 'example-.com', 'mail.catchall.domain must be a domain name'],
  ['mail.catchall.domain', 'exa_mple.com', 'mail.catchall.domain must be a domain name'],
  ['mail.catchall.domain', 'example..com', 'mail.catchall.domain must be a domain name'],
  ['mail.catchall.domain', '192.168.0.1', 'mail.catchall.domain must be a domain name'],
  ['mail.catchall.domain', 'user@example.com', 'mail.catchall.domain must be a domain name'],
  ['mail.catchall.domain', `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}.com`, 'must be a domain name'],
  ['mail.catchall.domain', `${'a'.repeat(64)}.com`, 'must be a domain name'],
  ['mail.default.from', 'no reply', 'mail.default.from must be the local part of an address'],
  ['mail.default.from', 'notifications@', 'mail.default.from must be a local part such as notifications or an email address'],
  ['mail.default.from', 'a@b@example.com', 'mail.default.from must be a local part'],
  ['mail.default.from', '.dot@example.com', 'mail.default.from must be a local part'],
  ['mail.bounce.alias', 'bounce@example.com', 'mail.bounce.alias must be the local part of an address (the part before the @), such as bounce'],
  ['mail.bounce.alias', 'a..b', 'mail.bounce.alias must be the local part'],
  ['mail.catchall.alias', 'x'.repeat(65), 'mail.catchall.alias must be the local part'],
  ['mass_mailing.outgoing_mail_server', 'maybe', 'mass_mailing.outgoing_mail_server must be true or false'],
  ['mass_mailing.mail_server_id', '0', 'mass_mailing.mail_server_id must be the id of an outgoing mail server (a positive whole number)'],
  ['mass_mailing.mail_server_id', '-3', 'positive whole number'],
  ['mass_mailing.mail_server_id', '1.5', 'positive whole number'],
  ['mass_mailing.mail_server_id', '007', 'positive whole number'],
  ['mass_mailing.mail_server_id', '2147483648', 'positive whole number'],
  ['microsoft_outlook.endpoint', 'http://login.microsoftonline.com/common/oauth2/v2.0/', 'microsoft_outlook.endpoint must be an https:// authority URL'],
  ['microsoft_outlook.endpoint', 'http://10.0.0.1/x/', 'http:// only on 127.0.0.1, localhost or [::1]'],
  ['microsoft_outlook.endpoint', 'https://login.microsoftonline.com/common/oauth2/v2.0/?x=1', 'microsoft_outlook.endpoint must be'],
  ['microsoft_outlook.endpoint', 'common', 'microsoft_outlook.endpoint must be'],
  ['mail.catchall.domain', '   ', 'mail.catchall.domain must not be empty; unset it instead'],
  ['mail.server.allowed_ports', '587, 8080x', 'mail.server.allowed_ports must be comma-separated ports and ranges such as 25, 143, 465, 587, 993, 2525, 2525-2530: "8080x" is not a port'],
  ['mail.server.allowed_ports', '0', '"0" is not a port (1-65535)'],
  ['mail.server.allowed_ports', '65536', '"65536" is not a port'],
  ['mail.server.allowed_ports', '2530-2525', '"2530-2525" is not a port'],
  ['mail.server.allowed_ports', ' , ', 'mail.server.allowed_ports must be at least one port'],
  ['Upper.Case', 'v', 'A parameter key must be 1-128 lower-case letters, digits, dots, dashes or underscores (got "Upper.Case")'],
  ['', 'v', 'A parameter key must be'],
  ['k'.repeat(129), 'v', 'A parameter key must be'],
  ['has space', 'v', 'A parameter key must be'],
  ['free.key', 'line one\nline two', 'free.key must not contain line breaks or other control characters (tab is allowed)'],
  ['free.key', 'carriage\rreturn', 'free.key must not contain line breaks'],
  ['web.base.url', 'https://example.com\r\nX-Injected: 1', 'web.base.url must not contain line breaks'],
  ['free.key', 'x'.repeat(10_001), 'free.key must be at most 10000 characters (got 10001)'],
];

function invalidParameter(messagePart: string) {
  return (e: unknown) => {
    assert.ok(e instanceof AppError, `expected an AppError, got ${String(e)}`);
    assert.equal(e.code, 'JUNIPER_ERR_INVALID_PARAMETER');
    assert.equal(e.status, 400);
    assert.ok(e.message.includes(messagePart), `"${e.message}" should contain "${messagePart}"`);
    return true;
  };
}

describe('parameter rules', () => {
  for (const [key, input, stored] of accepted) {
    it(`stores ${key} = ${JSON.stringify(input)} as ${JSON.stringify(stored)}`, () => {
      assert.equal(normaliseParameter(key, input), stored);
    });
  }

  for (const [key, input, messagePart] of rejected) {
    it(`rejects ${key || '(empty key)'} = ${JSON.stringify(input.slice(0, 40))} naming the rule`, () => {
      assert.throws(() => normaliseParameter(key, input), invalidParameter(messagePart));
    });
  }

  it('says exactly what a catch-all domain must be, with the value it got', () => {
    assert.throws(() => normaliseParameter('mail.catchall.domain', 'not a domain'), (e: unknown) => {
      assert.ok(e instanceof AppError);
      assert.equal(e.message, 'mail.catchall.domain must be a domain name such as example.com (got "not a domain")');
      return true;
    });
  });

  it('stores normalised values that normalise to themselves', () => {
    for (const [key, , stored] of accepted) {
      if (stored !== '') assert.equal(normaliseParameter(key, stored), stored, key);
    }
  });

  it('describes every known parameter in one line', () => {
    for (const [key, rule] of Object.entries(knownParameters)) {
      assert.ok(rule.description.length > 10 && !rule.description.includes('\n'), key);
    }
  });

  it('keeps long values short in messages', () => {
    assert.throws(() => normaliseParameter('mail.catchall.domain', `${'x '.repeat(100)}`), (e: unknown) => {
      assert.ok(e instanceof AppError);
      assert.ok(e.message.length < 200, e.message);
      assert.ok(e.message.includes('..."'), e.message);
      return true;
    });
  });
});

describe('boolean words', () => {
  const table: [string, boolean | undefined][] = [
    ['true', true], ['TRUE', true], ['yes', true], ['on', true], ['1', true],
    ['false', false], ['No', false], ['off', false], ['0', false],
    ['', undefined], ['2', undefined], ['enabled', undefined],
  ];
  for (const [word, value] of table) {
    it(`reads ${JSON.stringify(word)} as ${String(value)}`, () => assert.equal(parseBoolean(word), value));
  }
});

describe('typed mail parameters', () => {
  it('reads every known key into its type and leaves the rest unset', () => {
    const p = toMailParameters(
      new Map([
        ['web.base.url', 'https://mail.example.com'],
        ['mail.catchall.domain', 'example.com'],
        ['mass_mailing.outgoing_mail_server', 'true'],
        ['mass_mailing.mail_server_id', '3'],
        ['unrelated', 'x'],
      ]),
    );
    assert.deepEqual(p, {
      webBaseUrl: 'https://mail.example.com',
      catchallDomain: 'example.com',
      defaultFrom: null,
      bounceAlias: null,
      catchallAlias: null,
      massMailingDedicatedServer: true,
      massMailingServerId: 3,
      maxMessageBytes: 25 * 1024 * 1024,
      outlookEndpoint: null,
      graphEndpoint: null,
    });
  });

  it('treats a stored value that breaks its rule as unset instead of failing', () => {
    const p = toMailParameters(new Map([['mail.catchall.domain', 'not a domain'], ['mass_mailing.mail_server_id', 'x']]));
    assert.equal(p.catchallDomain, null);
    assert.equal(p.massMailingServerId, null);
    assert.equal(p.massMailingDedicatedServer, false);
  });
});

describe('derived addresses', () => {
  const base: MailParameters = toMailParameters(new Map());
  const table: [string, Partial<MailParameters>, string | null, string | null, string | null][] = [
    ['nothing set', {}, null, null, null],
    ['local parts without a domain', { defaultFrom: 'notifications', bounceAlias: 'bounce', catchallAlias: 'catchall' }, null, null, null],
    [
      'local parts with a domain',
      { defaultFrom: 'notifications', bounceAlias: 'bounce', catchallAlias: 'catchall', catchallDomain: 'example.com' },
      'notifications@example.com',
      'bounce@example.com',
      'catchall@example.com',
    ],
    ['a full default From without a domain', { defaultFrom: 'noreply@other.org' }, 'noreply@other.org', null, null],
    ['a full default From wins over the domain', { defaultFrom: 'noreply@other.org', catchallDomain: 'example.com' }, 'noreply@other.org', null, null],
    ['a domain alone', { catchallDomain: 'example.com' }, null, null, null],
  ];
  for (const [name, patch, from, bounce, catchall] of table) {
    it(`derives the addresses from ${name}`, () => {
      const p = { ...base, ...patch };
      assert.equal(defaultFromAddress(p), from);
      assert.equal(bounceAddress(p), bounce);
      assert.equal(catchallAddress(p), catchall);
    });
  }
});
