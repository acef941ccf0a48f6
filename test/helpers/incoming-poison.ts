// A corpus of malformed and hostile messages for the fetch loop: mutants made at test time from valid seeds by
// a seeded PRNG (the same corpus on every run, so a failure can be replayed), plus hand-made ones for the cases
// mutation rarely hits. Every message starts with its own intact Message-ID line, so no two of them are the
// same message for dedupe (a truncated Message-ID could otherwise coincide with another); what follows may be
// anything. Also: delivery straight into a Dovecot Maildir, the fastest way in for thousands of messages.
import fs from 'node:fs';
import path from 'node:path';
import type { Dovecot } from '../peers/dovecot.js';
import { corpusMessage, type CorpusMessage } from './incoming.js';

const CRLF = '\r\n';

/** mulberry32: small, fast, and good enough to pick mutations; the same seed gives the same corpus. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const int = (rand: Rand, n: number) => Math.floor(rand() * n);
const pick = <T>(rand: Rand, items: readonly T[]): T => items[int(rand, items.length)]!;

const SEED_KINDS: CorpusMessage['kind'][] = ['plain', 'alternative', 'attachment', 'latin1', 'shift_jis', 'cp1252'];

function nestedMessage(depth: number, to: string): Buffer {
  let inner = Buffer.from(`From: inner-${depth}@client.test${CRLF}To: ${to}${CRLF}Subject: level ${depth}${CRLF}Message-ID: <level-${depth}@client.test>${CRLF}${CRLF}innermost${CRLF}`);
  for (let level = depth - 1; level >= 1; level--) {
    const b = `nest-${level}`;
    inner = Buffer.concat([
      Buffer.from(`From: level-${level}@client.test${CRLF}To: ${to}${CRLF}Subject: level ${level}${CRLF}Message-ID: <level-${level}@client.test>${CRLF}MIME-Version: 1.0${CRLF}Content-Type: multipart/mixed; boundary="${b}"${CRLF}${CRLF}`),
      Buffer.from(`--${b}${CRLF}Content-Type: text/plain${CRLF}${CRLF}level ${level}${CRLF}--${b}${CRLF}Content-Type: message/rfc822${CRLF}${CRLF}`),
      inner,
      Buffer.from(`${CRLF}--${b}--${CRLF}`),
    ]);
  }
  return inner;
}

/** The valid seeds mutants are made from: the everyday shapes plus a DSN and a nested forward, without Message-ID. */
export function seeds(to: string, dsn: Buffer): Buffer[] {
  const withoutId = (raw: Buffer) => Buffer.from(raw.toString('latin1').replace(/^Message-ID:.*\r?\n/im, ''), 'latin1');
  return [...SEED_KINDS.map((k, i) => withoutId(corpusMessage(k, to, i).raw)), withoutId(dsn), withoutId(nestedMessage(3, to))];
}

type Mutation = (raw: Buffer, rand: Rand) => Buffer;

const blankLine = (raw: Buffer) => {
  const i = raw.indexOf('\r\n\r\n');
  return i === -1 ? raw.indexOf('\n\n') : i;
};

export const mutations: Record<string, Mutation> = {
  truncate: (raw, rand) => raw.subarray(0, int(rand, raw.length)),
  flipBytes: (raw, rand) => {
    const out = Buffer.from(raw);
    for (let n = 1 + int(rand, 8); n > 0 && out.length; n--) out[int(rand, out.length)] = int(rand, 256);
    return out;
  },
  swapHeaderAndBody: (raw) => {
    const i = blankLine(raw);
    return i === -1 ? Buffer.concat([raw, raw]) : Buffer.concat([raw.subarray(i + 2), Buffer.from(CRLF), raw.subarray(0, i + 2)]);
  },
  damageBoundary: (raw, rand) => {
    const text = raw.toString('latin1');
    const b = /boundary="?([^";\r\n]+)"?/i.exec(text)?.[1];
    if (!b) return Buffer.from(text.replace(/\r\n\r\n/, `${CRLF}Content-Type: multipart/mixed; boundary="gone"${CRLF}${CRLF}--gone${CRLF}`), 'latin1');
    const damaged = pick(rand, [
      () => text.split(`--${b}--`).join(''), // no closing boundary
      () => text.split(`--${b}`).join(`--${b}x`), // every delimiter wrong
      () => text.replace(`--${b}`, `--${b}${CRLF}--${b}${CRLF}--${b}`), // empty parts
      () => text.replace(/boundary="?[^";\r\n]+"?/i, 'boundary='), // empty boundary parameter
      () => text.replace(`--${b}\r\n`, `--${b}`), // delimiter glued to the part's headers
    ])();
    return Buffer.from(damaged, 'latin1');
  },
  random8bit: (raw, rand) => {
    const at = int(rand, raw.length + 1);
    const junk = Buffer.from(Array.from({ length: 1 + int(rand, 200) }, () => (rand() < 0.1 ? 0 : 128 + int(rand, 128))));
    return Buffer.concat([raw.subarray(0, at), junk, raw.subarray(at)]);
  },
  duplicateHeaders: (raw, rand) => {
    const i = blankLine(raw);
    const head = (i === -1 ? raw : raw.subarray(0, i)).toString('latin1').split(/\r?\n/);
    const line = pick(rand, head) ?? 'X-Empty:';
    const copies = Array.from({ length: 1 + int(rand, 50) }, (_, n) => (rand() < 0.5 ? line : line.replace(/:.*/, `: conflicting value ${n}`)));
    return Buffer.concat([Buffer.from([...head, ...copies].join(CRLF), 'latin1'), i === -1 ? Buffer.alloc(0) : raw.subarray(i)]);
  },
  lineEndings: (raw, rand) => Buffer.from(raw.toString('latin1').replace(/\r\n/g, pick(rand, ['\n', '\r', '\n\r', '\r\r\n'])), 'latin1'),
  lyingEncoding: (raw, rand) => {
    const text = raw.toString('latin1');
    const swapped = /Content-Transfer-Encoding:/i.test(text)
      ? text.replace(/Content-Transfer-Encoding:[^\r\n]*/gi, `Content-Transfer-Encoding: ${pick(rand, ['base64', 'quoted-printable', 'x-uuencode', 'binary', '7bit'])}`)
      : text.replace(/\r\n\r\n/, `${CRLF}Content-Transfer-Encoding: base64${CRLF}${CRLF}`);
    return Buffer.from(swapped.replace(/charset="?[^";\r\n]+"?/gi, `charset=${pick(rand, ['x-no-such-charset', 'utf-7', 'utf-16', 'ISO-2022-JP', '"', ''])}`), 'latin1');
  },
  dropLines: (raw, rand) => {
    const lines = raw.toString('latin1').split('\r\n');
    for (let n = 1 + int(rand, 3); n > 0 && lines.length > 1; n--) lines.splice(int(rand, lines.length), 1);
    return Buffer.from(lines.join(CRLF), 'latin1');
  },
  breakFolding: (raw, rand) => {
    const text = raw.toString('latin1');
    const at = int(rand, Math.max(blankLine(raw), 1));
    return Buffer.from(text.slice(0, at) + pick(rand, ['\r\n ', '\r\n\t', '\r\n', ':', '\r\n: ', '=?utf-8?B?!!!?=']) + text.slice(at), 'latin1');
  },
};

const MUTATIONS = Object.values(mutations);

/** The Message-ID line every corpus message starts with. */
export const idLine = (id: string) => Buffer.from(`Message-ID: <${id}>${CRLF}`);

/** `count` mutants: each a seed with 1-3 mutations after its own Message-ID line. Deterministic for a seed. */
export function mutants(count: number, seedMessages: Buffer[], seed: number, tag: string): Buffer[] {
  const rand = prng(seed);
  return Array.from({ length: count }, (_, n) => {
    let raw = pick(rand, seedMessages);
    for (let k = 1 + int(rand, 3); k > 0; k--) raw = pick(rand, MUTATIONS)(raw, rand);
    return Buffer.concat([idLine(`mutant-${n}.${tag}@poison.test`), raw]);
  });
}

export interface HandMade {
  name: string;
  raw: Buffer;
}

/** The hostile shapes by hand, each named. `oversize` is bigger than `capBytes`. */
export function handMade(to: string, tag: string, capBytes: number): HandMade[] {
  const id = (name: string) => `${name}.${tag}@poison.test`;
  const head = (name: string, extra: string[] = []) => [`Message-ID: <${id(name)}>`, 'From: "Hostile" <hostile@client.test>', `To: ${to}`, `Subject: ${name}`, 'MIME-Version: 1.0', ...extra].join(CRLF);
  const msg = (name: string, extra: string[], body: string | Buffer): HandMade => ({ name, raw: Buffer.concat([Buffer.from(head(name, extra) + CRLF + CRLF, 'latin1'), typeof body === 'string' ? Buffer.from(body, 'latin1') : body]) });
  const parts = (n: number, b: string) => Array.from({ length: n }, (_, i) => `--${b}${CRLF}Content-Type: text/plain${CRLF}${CRLF}part ${i}${CRLF}`).join('') + `--${b}--${CRLF}`;
  const noisyHex = (bytes: number) => Buffer.from(Array.from({ length: bytes }, (_, i) => (i * 7919) % 251)).toString('hex');
  return [
    msg('boundary-never-used', ['Content-Type: multipart/mixed; boundary="declared"'], `--other${CRLF}Content-Type: text/plain${CRLF}${CRLF}text${CRLF}--other--${CRLF}`),
    msg('boundary-missing', ['Content-Type: multipart/mixed'], `--x${CRLF}${CRLF}text${CRLF}`),
    msg('boundary-unclosed', ['Content-Type: multipart/mixed; boundary="u"'], `--u${CRLF}Content-Type: text/plain${CRLF}${CRLF}never closed${CRLF}--u${CRLF}Content-Type: multipart/alternative; boundary="v"${CRLF}${CRLF}--v${CRLF}`),
    msg('unknown-charset', ['Content-Type: text/plain; charset=x-no-such-charset'], 'caf\xe9\r\n'),
    msg('invalid-utf8', ['Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit'], Buffer.from([0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x28, 0x8c, 0xbc, 0x0d, 0x0a])),
    msg('utf16-declared', ['Content-Type: text/plain; charset=utf-16'], 'odd length text\r\n'),
    msg('bad-base64', ['Content-Type: text/plain', 'Content-Transfer-Encoding: base64'], '!!!not*base64***%%%\r\n===\r\n'),
    msg('bad-quoted-printable', ['Content-Type: text/plain', 'Content-Transfer-Encoding: quoted-printable'], '=ZZ=\r\n=4=\r\n=\r\n'),
    msg('bad-encoded-words', ['Content-Type: text/plain', 'X-Note: =?utf-8?B?!!!?= =?x-none?Q?=FF?= =?utf-8?Q?unterminated'], 'body\r\n'),
    msg('parts-999', ['Content-Type: multipart/mixed; boundary="p"'], parts(999, 'p')),
    msg('parts-1001', ['Content-Type: multipart/mixed; boundary="p"'], parts(1001, 'p')),
    msg('header-1mb', Array.from({ length: 1100 }, (_, i) => `X-Filler-${i}: ${'h'.repeat(1000)}`), 'body after a 1 MB header\r\n'),
    msg('nested-rfc822-6', ['Content-Type: message/rfc822'], nestedMessage(6, to)),
    msg('nul-bytes', ['Content-Type: text/plain', 'X-Nul: a\u0000b'], 'text\u0000with\u0000NULs\r\n'),
    msg('8bit-headers', ['Content-Type: text/plain; charset=utf-8', 'X-Latin1: Gr\xfc\xdfe', `X-Utf8: ${Buffer.from('Grüße 日本', 'utf8').toString('latin1')}`], 'body\r\n'),
    msg('line-1mb', ['Content-Type: text/plain'], `${'w'.repeat(1024 * 1024)}${CRLF}`),
    msg('header-line-1mb', [`X-Long: ${'l'.repeat(1024 * 1024)}`], 'body\r\n'),
    msg('references-20000', ['Content-Type: text/plain', `References: ${Array.from({ length: 20_000 }, (_, i) => `<ref-${i}@client.test>`).join(' ')}`], 'thread bomb\r\n'),
    // Random hex: PostgreSQL compresses index entries, so repeated characters would fit a btree after all.
    { name: 'message-id-100kb', raw: Buffer.from(`Message-ID: <${noisyHex(50 * 1024)}.${tag}@poison.test>${CRLF}From: a@client.test${CRLF}Subject: message-id-100kb${CRLF}${CRLF}long id${CRLF}`) },
    { name: 'message-id-2mb', raw: Buffer.from(`Message-ID: <${noisyHex(1024 * 1024)}.${tag}@poison.test>${CRLF}From: a@client.test${CRLF}Subject: message-id-2mb${CRLF}${CRLF}huge id${CRLF}`) },
    { name: 'no-header-section', raw: Buffer.from(`just a body line, ${tag}${CRLF}and another${CRLF}`) },
    { name: 'binary-garbage', raw: Buffer.concat([Buffer.from(tag), Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 31 + 7) % 256))]) },
    { name: 'empty', raw: Buffer.alloc(0) },
    { name: 'only-crlf', raw: Buffer.from(CRLF) },
    { name: 'headers-only-no-blank-line', raw: Buffer.from(`${head('headers-only-no-blank-line')}`) },
    msg('oversize', ['Content-Type: application/octet-stream', 'Content-Transfer-Encoding: base64'], `${Buffer.alloc(Math.ceil((capBytes + 1024 * 1024) * 0.75), 1).toString('base64').replace(/.{76}/g, `$&${CRLF}`)}${CRLF}`),
  ];
}

/**
 * Puts raw messages into `user`'s INBOX the way a local delivery agent does: a file each in Maildir/new, which
 * Dovecot indexes (and gives UIDs in file-name order) at the next SELECT. The Maildir must exist: log in once
 * first. ~0.5 s for 1,000 messages, where IMAP APPEND takes ~10 s.
 */
export function deliverToMaildir(dovecot: Dovecot, user: string, raws: Buffer[]): void {
  const [local, domain] = user.split('@');
  const dir = path.join(dovecot.dir, 'mail', domain!, local!, 'Maildir');
  const owner = fs.statSync(dir);
  const stamp = Math.floor(Date.now() / 1000);
  raws.forEach((raw, i) => {
    const name = `${stamp}.P${process.pid}Q${String(i).padStart(6, '0')}.poison`;
    const tmp = path.join(dir, 'tmp', name);
    fs.writeFileSync(tmp, raw, { mode: 0o600 });
    fs.chownSync(tmp, owner.uid, owner.gid);
    fs.renameSync(tmp, path.join(dir, 'new', name));
  });
}
