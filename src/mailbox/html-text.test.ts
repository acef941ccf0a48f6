import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HTML_TEXT_MAX_CHARS, HtmlText } from './html-text.js';
import { parseMessage } from './parse.js';

const IMG = '<img src="http://x/y">';
const message = (contentType: string, body: string) =>
  Buffer.from(`From: a@client.test\r\nTo: v@example.test\r\nSubject: s\r\nMessage-ID: <m@client.test>\r\nMIME-Version: 1.0\r\nContent-Type: ${contentType}\r\n\r\n${body}\r\n`);
const textOf = async (raw: Buffer) => {
  const r = await parseMessage(raw);
  assert.ok(r.ok, r.ok ? '' : r.error);
  return r.message.text;
};

describe('text made of HTML', () => {
  it('is not wrapped: long lines and long words stay whole', () => {
    const words = 'word '.repeat(50).trim();
    assert.equal(new HtmlText().convert(`<p>${words}</p><p>${'x'.repeat(500)}</p>`), `${words}\n\n${'x'.repeat(500)}`);
  });

  it('converts at most the budget of HTML, shared by the parts of one message, then gives nothing', () => {
    const html = new HtmlText(10 * IMG.length + 5);
    assert.equal(html.convert(IMG.repeat(4)), '[http://x/y]'.repeat(4));
    // 6 whole images and a cut one (which makes no text) are left in the budget.
    assert.equal(html.convert(IMG.repeat(20)), '[http://x/y]'.repeat(6));
    assert.equal(html.convert('<p>more</p>'), '');
  });

  it('leaves out elements nested beyond 1,000 levels, without failing', () => {
    const deep = `${'<div>'.repeat(5000)}deep${'</div>'.repeat(5000)}<p>shallow</p>`;
    const text = new HtmlText().convert(deep);
    assert.ok(!text.includes('deep') && text.includes('shallow'), text.slice(0, 100));
  });

  it("of a hostile HTML-only message: the first HTML_TEXT_MAX_CHARS of its HTML, the HTML kept whole", async () => {
    const body = IMG.repeat(Math.ceil((2 * HTML_TEXT_MAX_CHARS) / IMG.length));
    const r = await parseMessage(message('text/html; charset=utf-8', body));
    assert.ok(r.ok);
    assert.ok(r.message.html!.trimEnd() === body, 'the HTML is whole');
    assert.ok(r.message.text === '[http://x/y]'.repeat(Math.floor(HTML_TEXT_MAX_CHARS / IMG.length)), `text of ${r.message.text?.length} characters`);
  });

  it('is where mailparser put it: an HTML-only message, HTML beside text outside multipart/alternative; not HTML that has a text alternative', async () => {
    assert.equal(await textOf(message('text/html', '<h1>Sale</h1><p>Our <b>tulips</b>.</p>')), 'SALE\n\nOur tulips.');
    const mixed = ['--b', 'Content-Type: text/html', '', '<p>Hello <i>there</i></p>', '--b', 'Content-Type: text/plain', '', 'footer', '--b--'].join('\r\n');
    assert.equal(await textOf(message('multipart/mixed; boundary="b"', mixed)), 'Hello there\nfooter');
    const alternative = ['--b', 'Content-Type: text/plain', '', 'plain words', '--b', 'Content-Type: text/html', '', '<p>html words</p>', '--b--'].join('\r\n');
    assert.equal(await textOf(message('multipart/alternative; boundary="b"', alternative)), 'plain words');
    // HTML in multipart/mixed with no text part at all: mailparser made no text of it, nor does Juniper.
    const htmlAndFile = ['--b', 'Content-Type: text/html', '', '<p>only html</p>', '--b', 'Content-Type: application/pdf; name="a.pdf"', 'Content-Transfer-Encoding: base64', '', 'JVBERi0=', '--b--'].join('\r\n');
    assert.equal(await textOf(message('multipart/mixed; boundary="b"', htmlAndFile)), null);
  });
});
