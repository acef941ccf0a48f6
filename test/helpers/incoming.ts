// Shortcuts for incoming-mail tests: a corpus of real-world message shapes (charsets, multipart, attachments,
// no Message-ID), delivery into Dovecot, and a second IMAP client that looks at (or reads) the mailbox as a
// person in Outlook would.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { ImapFlow } from 'imapflow';
import { after, before } from 'node:test';
import { imapConnector } from '../../src/incoming/imap-reader.js';
import type { ConnectReader, MailboxReader } from '../../src/incoming/mailbox-reader.js';
import { startDovecot, type Dovecot } from '../peers/dovecot.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';

const CRLF = '\r\n';

export interface CorpusMessage {
  kind: 'plain' | 'alternative' | 'attachment' | 'latin1' | 'shift_jis' | 'cp1252' | 'no-message-id';
  messageId: string | null;
  subject: string;
  raw: Buffer;
  /** Text the stored body must contain once decoded. */
  expectText: string;
}

const head = (to: string, subject: string, messageId: string | null, extra: string[] = []) =>
  [
    'From: "Customer Smith" <customer@client.test>',
    `To: ${to}`,
    `Subject: ${subject}`,
    'Date: Tue, 04 Mar 2025 10:00:00 +0000',
    ...(messageId ? [`Message-ID: ${messageId}`] : []),
    'MIME-Version: 1.0',
    ...extra,
  ].join(CRLF);

const bytes = (...parts: (string | Buffer)[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));

// Shift_JIS for 日本語のテキスト and windows-1252 for “Smart” quotes €: Node encodes neither, so the bytes are spelled out.
const SJIS_TEXT = Buffer.from('93fa967b8cea82cc8365834c83588367', 'hex');
const CP1252_TEXT = Buffer.from([0x93, 0x53, 0x6d, 0x61, 0x72, 0x74, 0x94, 0x20, 0x71, 0x75, 0x6f, 0x74, 0x65, 0x73, 0x20, 0x80, 0x35]);

export function corpusMessage(kind: CorpusMessage['kind'], to: string, n: number): CorpusMessage {
  const messageId = kind === 'no-message-id' ? null : `<corpus-${n}-${crypto.randomUUID()}@client.test>`;
  const subject = `${kind} #${n}`;
  switch (kind) {
    case 'plain':
      return { kind, messageId, subject, expectText: `Plain body ${n}.`, raw: bytes(head(to, subject, messageId, ['Content-Type: text/plain; charset=utf-8']), CRLF, CRLF, `Plain body ${n}.`, CRLF) };
    case 'no-message-id':
      return { kind, messageId, subject, expectText: `No id ${n}.`, raw: bytes(head(to, subject, null, ['Content-Type: text/plain']), CRLF, CRLF, `No id ${n}.`, CRLF) };
    case 'alternative': {
      const b = `alt-${n}`;
      return {
        kind,
        messageId,
        subject,
        expectText: `Alternative text ${n}.`,
        raw: bytes(
          head(to, subject, messageId, [`Content-Type: multipart/alternative; boundary="${b}"`]),
          CRLF, CRLF,
          `--${b}${CRLF}Content-Type: text/plain; charset=utf-8${CRLF}${CRLF}Alternative text ${n}.${CRLF}`,
          `--${b}${CRLF}Content-Type: text/html; charset=utf-8${CRLF}${CRLF}<p>Alternative <b>html</b> ${n}.</p>${CRLF}`,
          `--${b}--${CRLF}`,
        ),
      };
    }
    case 'attachment': {
      const b = `mix-${n}`;
      const pdf = Buffer.from(`%PDF-1.4 invoice ${n}\n%%EOF\n`);
      return {
        kind,
        messageId,
        subject,
        expectText: `See the invoice ${n}.`,
        raw: bytes(
          head(to, subject, messageId, [`Content-Type: multipart/mixed; boundary="${b}"`]),
          CRLF, CRLF,
          `--${b}${CRLF}Content-Type: text/plain; charset=utf-8${CRLF}${CRLF}See the invoice ${n}.${CRLF}`,
          `--${b}${CRLF}Content-Type: application/pdf; name="invoice-${n}.pdf"${CRLF}Content-Disposition: attachment; filename="invoice-${n}.pdf"${CRLF}Content-Transfer-Encoding: base64${CRLF}${CRLF}`,
          pdf.toString('base64'), CRLF,
          `--${b}--${CRLF}`,
        ),
      };
    }
    case 'latin1':
      return {
        kind,
        messageId,
        subject,
        expectText: 'Grüße aus Köln, ½ Preis',
        raw: bytes(head(to, subject, messageId, ['Content-Type: text/plain; charset=ISO-8859-1', 'Content-Transfer-Encoding: 8bit']), CRLF, CRLF, Buffer.from('Grüße aus Köln, ½ Preis\r\n', 'latin1')),
      };
    case 'shift_jis':
      return {
        kind,
        messageId,
        subject,
        expectText: '日本語のテキスト',
        raw: bytes(head(to, subject, messageId, ['Content-Type: text/plain; charset=Shift_JIS', 'Content-Transfer-Encoding: 8bit']), CRLF, CRLF, SJIS_TEXT, CRLF),
      };
    case 'cp1252':
      return {
        kind,
        messageId,
        subject,
        expectText: '“Smart” quotes €5',
        raw: bytes(head(to, subject, messageId, ['Content-Type: text/plain; charset=windows-1252', 'Content-Transfer-Encoding: 8bit']), CRLF, CRLF, CP1252_TEXT, CRLF),
      };
  }
}

const CYCLE: CorpusMessage['kind'][] = ['plain', 'alternative', 'attachment', 'latin1', 'shift_jis', 'cp1252'];

/** n messages cycling through the shapes, exactly one of them without a Message-ID. */
export function corpus(n: number, to: string): CorpusMessage[] {
  return Array.from({ length: n }, (_, i) => corpusMessage(i === 7 ? 'no-message-id' : CYCLE[i % CYCLE.length]!, to, i));
}

/** A message mailparser refuses (more MIME parts than it allows): what quarantine is for. */
export function malformedMessage(to: string): Buffer {
  const parts = Array.from({ length: 1001 }, (_, i) => `--b${CRLF}Content-Type: text/plain${CRLF}${CRLF}part ${i}${CRLF}`).join('');
  return bytes(head(to, 'too many parts', `<malformed-${crypto.randomUUID()}@client.test>`, ['Content-Type: multipart/mixed; boundary="b"']), CRLF, CRLF, parts, `--b--${CRLF}`);
}

/** Delivers over LMTP a few at a time (one LMTP session each, as an MTA would). */
export async function deliverAll(dovecot: Dovecot, user: string, raws: (Buffer | string)[], parallel = 8): Promise<void> {
  for (let i = 0; i < raws.length; i += parallel) await Promise.all(raws.slice(i, i + parallel).map((raw) => dovecot.deliver(user, raw)));
}

/** Another IMAP client (a person in Outlook): inspect or change flags by UID. */
export async function withMailbox<T>(dovecot: Dovecot, user: string, pass: string, folder: string, fn: (client: ImapFlow) => Promise<T>): Promise<T> {
  const client = new ImapFlow({ host: dovecot.host, port: dovecot.imapsPort, secure: true, tls: { rejectUnauthorized: false }, auth: { user, pass }, logger: false });
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.mailboxOpen(folder);
    return await fn(client);
  } finally {
    await client.logout();
  }
}

/** UID → whether \Seen is set, for every message in the folder. */
export async function seenByUid(dovecot: Dovecot, user: string, pass: string, folder = 'INBOX'): Promise<Map<number, boolean>> {
  return withMailbox(dovecot, user, pass, folder, async (client) => {
    const box = client.mailbox;
    const rows = box && box.exists > 0 ? await client.fetchAll('1:*', { uid: true, flags: true }, { uid: true }) : [];
    return new Map(rows.map((r) => [r.uid, r.flags?.has('\\Seen') ?? false]));
  });
}

export type Json = Record<string, unknown>;

/**
 * The API calls the incoming tests make, as an admin with an API key, against password-auth servers on the
 * given Dovecot. `session` is read at call time, since http and key are made in a before() hook.
 */
export function incomingApi(session: () => { http: FastifyInstance; key: string }, dovecot: () => Dovecot, password: string) {
  const api = async (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, payload?: object) => {
    const { http, key } = session();
    const res = await http.inject({ method, url, payload, headers: { authorization: `Bearer ${key}` } });
    const json = String(res.headers['content-type']).startsWith('application/json');
    return { status: res.statusCode, body: json ? res.json<Json>() : {}, text: res.body, raw: res.rawPayload };
  };
  const createServer = async (user: string, extra: object = {}) => {
    const r = await api('POST', '/api/v1/incoming-servers', {
      name: user, host: '127.0.0.1', port: dovecot().imapsPort, security: 'ssl', allowSelfSigned: true, auth: 'password', username: user, password, ...extra,
    });
    assert.equal(r.status, 201, r.text);
    return r.body.id as number;
  };
  const confirmed = async (user: string, extra: object = {}) => {
    const id = await createServer(user, extra);
    const test = await api('POST', `/api/v1/incoming-servers/${id}/test`);
    assert.equal(test.body.ok, true, test.text);
    return id;
  };
  // Fetch Now starts a background job (202); its counts are the finished job's result.
  const fetchNow = async (id: number) => {
    const r = await api('POST', `/api/v1/incoming-servers/${id}/fetch`);
    assert.equal(r.status, 202, r.text);
    for (;;) {
      const job = await api('GET', `/api/v1/jobs/${String(r.body.id)}`);
      assert.equal(job.status, 200, job.text);
      if (job.body.state === 'succeeded') return job.body.result as Json;
      assert.equal(job.body.state, 'running', job.text);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  const listed = async (query: string) => (await api('GET', `/api/v1/messages?limit=1000&${query}`)).body as unknown as Json[];
  return { api, createServer, confirmed, fetchNow, listed };
}

/** One identity server and one Dovecot (oauth2 passdb at it) for a whole test file, with these mailboxes, all with `password`. */
export function imapPeersForFile(users: string[], password: string): { readonly idp: IdentityServer; readonly dovecot: Dovecot } {
  const peers = {} as { idp: IdentityServer; dovecot: Dovecot };
  before(async () => {
    peers.idp = await startIdentityServer({});
    peers.dovecot = await startDovecot({ identityUrl: peers.idp.url, users: Object.fromEntries(users.map((u) => [u, password])) });
  });
  after(async () => {
    await peers.dovecot?.stop();
    await peers.idp?.stop();
  });
  return peers;
}

/** The real IMAP reader, with some of its calls replaced (to die, or to withhold a message as a faulty server does). */
export function readerWith(replace: (real: MailboxReader) => Partial<MailboxReader>): ConnectReader {
  return async (...args) => {
    const real = await imapConnector()(...args);
    return {
      open: (f) => real.open(f),
      listAfter: (u, exactAbove) => real.listAfter(u, exactAbove),
      firstUnseen: () => real.firstUnseen(),
      markSeen: (uids) => real.markSeen(uids),
      fetch: (uids) => real.fetch(uids),
      fetchHeaders: (uids, max) => real.fetchHeaders(uids, max),
      close: () => real.close(),
      ...replace(real),
    };
  };
}
