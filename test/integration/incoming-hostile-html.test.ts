// A hostile HTML-only message, on both databases, fetched from a real Dovecot: 2.2 MB of `<img>` tags (each one
// an unbroken `[url]` word to html-to-text, which mailparser's word wrap made quadratic: a few such megabytes
// outlasted the fetch lease). It is stored, not quarantined, with its HTML whole and a text made of at most
// HTML_TEXT_MAX_CHARS of it; an ordinary HTML-only message beside it keeps its words in the text (search).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { HTML_TEXT_MAX_CHARS } from '../../src/mailbox/html-text.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { incomingApi, imapPeersForFile, type Json } from '../helpers/incoming.js';

const PASSWORD = 'imap-secret';
const users = dialects.map((d) => `html-${d}@example.test`);
const peers = imapPeersForFile(users, PASSWORD);

const htmlOnly = (to: string, id: string, html: string) =>
  Buffer.from(`From: a@client.test\r\nTo: ${to}\r\nSubject: ${id}\r\nMessage-ID: <${id}@client.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n${html}\r\n`);

for (const dialect of dialects) {
  describe(`a hostile HTML-only message fetched from Dovecot (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let key: string;
    const user = `html-${dialect}@example.test`;
    const { api, confirmed, fetchNow, listed } = incomingApi(() => ({ http, key }), () => peers.dovecot, PASSWORD);

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      key = (await t.createUser('admin', 'admin')).apiKey;
    });
    after(async () => t.close());

    it('is stored with its HTML whole and a text of the first HTML_TEXT_MAX_CHARS of it', async () => {
      // 100,000 images (2.2 MB), then a word past the budget.
      const hostileHtml = `${'<img src="http://x/y">'.repeat(100_000)}<p>pastthebudget</p>`;
      assert.ok(hostileHtml.length > 2 * HTML_TEXT_MAX_CHARS);
      await peers.dovecot.deliver(user, htmlOnly(user, 'hostile', hostileHtml));
      await peers.dovecot.deliver(user, htmlOnly(user, 'ordinary', '<html><body><h1>Spring sale</h1><p>Our <b>tulips</b> are in.<br>See <a href="https://shop.example/t">the shop</a>.</p></body></html>'));
      const id = await confirmed(user);

      const counts = await fetchNow(id);
      assert.deepEqual({ fetched: counts.fetched, stored: counts.stored, quarantined: counts.quarantined }, { fetched: 2, stored: 2, quarantined: 0 });

      const rows = await t.app.database.db.selectFrom('messages').select(['subject', 'text_body', 'html_body', 'quarantined']).where('server_id', '=', id).execute();
      const hostile = rows.find((r) => r.subject === 'hostile')!;
      // (Large strings compared as booleans: a failure must not print megabytes.)
      assert.ok(hostile.html_body!.trimEnd() === hostileHtml, `the HTML is stored as sent (${hostile.html_body!.length} characters)`);
      const unit = '[http://x/y]';
      // The text of the first HTML_TEXT_MAX_CHARS characters: one `[url]` per whole <img> in them, nothing after.
      const expected = unit.repeat(Math.floor(HTML_TEXT_MAX_CHARS / '<img src="http://x/y">'.length));
      assert.ok(hostile.text_body === expected, `text of ${hostile.text_body?.length} characters, expected ${expected.length}: ${hostile.text_body?.slice(0, 40)}`);
      assert.ok(!hostile.text_body.includes('pastthebudget'));

      const ordinary = rows.find((r) => r.subject === 'ordinary')!;
      assert.equal(ordinary.text_body, 'SPRING SALE\n\nOur tulips are in.\nSee the shop [https://shop.example/t].');

      const detail = await api('GET', `/api/v1/messages/${String((await listed(`serverId=${id}`)).find((m: Json) => m.subject === 'hostile')!.id)}`);
      assert.equal(detail.status, 200);
      assert.equal((detail.body.text as string).length, hostile.text_body.length, 'the API gives the stored text');
    });
  });
}
