// How the fetcher learns what is new in a folder (ImapReader.listAfter) against a real Dovecot: every UID
// above the cursor in order, the exact size of each message larger than the bound (the size cap and the batch
// bytes depend on those) and the bound for the others, and nothing for a cursor at the end ("n:*" names the
// last message even below n).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { imapConnector } from '../../src/incoming/imap-reader.js';
import type { MailboxReader } from '../../src/incoming/mailbox-reader.js';
import { withMailbox } from '../helpers/incoming.js';
import { startDovecot, type Dovecot } from '../peers/dovecot.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';

const USER = 'listing@example.test';
const PASSWORD = 'listing-secret';
const BOUND = 64 * 1024;

const message = (n: number, bodyBytes: number) =>
  Buffer.from(`From: a@client.test\r\nTo: ${USER}\r\nSubject: m${n}\r\nMessage-ID: <m${n}-${crypto.randomUUID()}@client.test>\r\n\r\n${'x'.repeat(bodyBytes)}\r\n`);

describe('listing a folder by UID (Dovecot)', () => {
  let idp: IdentityServer;
  let dovecot: Dovecot;
  let reader: MailboxReader;
  // Small, just over the bound, exactly at it, large: the bound itself is not "larger".
  const raws = [message(1, 100), message(2, BOUND + 1), message(3, 200), message(4, 3 * BOUND), message(5, 10)];
  before(async () => {
    idp = await startIdentityServer();
    dovecot = await startDovecot({ identityUrl: idp.url, users: { [USER]: PASSWORD } });
    const exact = message(6, 0);
    raws.push(Buffer.concat([exact.subarray(0, exact.length - 2), Buffer.from('y'.repeat(BOUND - exact.length)), exact.subarray(exact.length - 2)]));
    assert.equal(raws[5]!.length, BOUND);
    await withMailbox(dovecot, USER, PASSWORD, 'INBOX', async (c) => {
      for (const raw of raws) await c.append('INBOX', raw);
    });
    reader = await imapConnector()({ serverId: 1, name: 'listing', host: '127.0.0.1', port: dovecot.imapsPort, security: 'ssl', allowSelfSigned: true }, { kind: 'password', user: USER, pass: PASSWORD });
    await reader.open('INBOX');
  });
  after(async () => {
    await reader.close();
    await dovecot.stop();
    await idp.stop();
  });

  it('lists every UID above the cursor in order, exact sizes above the bound and the bound below it', async () => {
    const listed = await reader.listAfter(0, BOUND);
    assert.deepEqual(listed.map((m) => m.uid), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(
      listed.map((m) => m.size),
      [BOUND, raws[1]!.length, BOUND, raws[3]!.length, BOUND, BOUND],
    );
  });

  it('lists from the middle, and nothing from the last UID on', async () => {
    assert.deepEqual((await reader.listAfter(3, BOUND)).map((m) => m.uid), [4, 5, 6]);
    assert.deepEqual(await reader.listAfter(6, BOUND), []);
    assert.deepEqual(await reader.listAfter(100, BOUND), []);
  });

  it('gives every size exactly when the bound is below them all', async () => {
    assert.deepEqual((await reader.listAfter(0, 1)).map((m) => m.size), raws.map((r) => r.length));
  });
});
