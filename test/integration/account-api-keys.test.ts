// The Account page's Create API key over HTTP, as a browser without JavaScript posts it: the new key is
// shown once, in the POST's own answer (never a cookie or a URL), and a resubmission of that form (a reload,
// back and forward, a double click) creates no second key but says which key the first one made. Both databases.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { dialects } from '../helpers/databases.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { startWorld, type World } from '../helpers/world.js';

const nonceOf = (body: string) => /name="nonce" value="([^"]+)"/.exec(body)?.[1] ?? '';

for (const dialect of dialects) {
  describe(`Account page: Create API key (${dialect})`, () => {
    let w: World;
    let jane: FormBrowser;
    let john: FormBrowser;

    before(async () => {
      w = await startWorld(dialect);
      jane = new FormBrowser(w.http);
      john = new FormBrowser(w.http);
      await jane.signIn(w.jane.login, w.jane.password);
      await john.signIn(w.john.login, w.john.password);
    });
    after(async () => w?.close());

    const janesKeys = async () => w.t.app.services.apiKeys.list(w.jane.id);

    it('shows the new key once and makes no second key when the same form is posted again', async () => {
      const before = (await janesKeys()).length;
      const form = await jane.get('/account');
      const nonce = nonceOf(form.body);
      assert.ok(nonce, 'the form carries a nonce');

      const first = await jane.post('/account/api-keys', { name: 'ERP', nonce }, { follow: false });
      assert.equal(first.statusCode, 200, first.body);
      const key = /<code id="new-key">([^<]+)<\/code>/.exec(first.body)?.[1] ?? '';
      assert.match(key, /^jnp_[A-Za-z0-9]{8}_/);
      assert.equal(await w.t.app.services.apiKeys.resolve(key).then((u) => u?.id), w.jane.id, 'the key shown works');
      assert.equal(String(first.headers['cache-control']), 'no-store');
      assert.equal(first.headers.location, undefined);
      assert.ok(!first.cookies.some((c: { value: string }) => c.value.includes(key)), 'the key is in no cookie');

      // The reload: the browser posts the very same body again.
      const again = await jane.post('/account/api-keys', { name: 'ERP', nonce }, { follow: false });
      assert.equal(again.statusCode, 409, again.body);
      assert.doesNotMatch(again.body, /id="new-key"/);
      assert.ok(!again.body.includes(key.slice(14)), 'the key is not shown a second time');
      assert.match(again.body, /This form was already submitted: key ERP \(jnp_[A-Za-z0-9]{8}…\) was created by the first one, and a reload or second click shows this page instead of the key\. If you did not copy it, revoke it and create another\./);
      const keys = await janesKeys();
      assert.equal(keys.length, before + 1, 'one key, not two');
      assert.equal(keys.filter((k) => k.name === 'ERP' && !k.revoked).length, 1);
    });

    it('makes one key when the same form is posted twice at once (a double click)', async () => {
      const before = (await janesKeys()).length;
      const nonce = nonceOf((await jane.get('/account')).body);
      const answers = await Promise.all([1, 2].map(() => jane.post('/account/api-keys', { name: 'twice', nonce }, { follow: false })));
      assert.deepEqual(answers.map((a) => a.statusCode).sort(), [200, 409]);
      assert.equal((await janesKeys()).length, before + 1);
    });

    it('creates a new key from each freshly shown form, including the one the answer shows', async () => {
      const before = (await janesKeys()).length;
      const first = await jane.post('/account/api-keys', { name: 'one', nonce: nonceOf((await jane.get('/account')).body) }, { follow: false });
      assert.equal(first.statusCode, 200, first.body);
      const second = await jane.post('/account/api-keys', { name: 'two', nonce: nonceOf(first.body) }, { follow: false });
      assert.equal(second.statusCode, 200, second.body);
      assert.match(second.body, /id="new-key"/);
      assert.equal((await janesKeys()).length, before + 2);
    });

    it("refuses a post without a nonce, with an altered one, another session's, or one minted from the page, and creates nothing", async () => {
      const before = (await janesKeys()).length;
      const mine = nonceOf((await jane.get('/account')).body);
      const johns = nonceOf((await john.get('/account')).body);
      const altered = `${mine.slice(0, 7)}${mine[7] === 'A' ? 'B' : 'A'}${mine.slice(8)}`;
      // A nonce for a prefix the page's holder chose, signed with what the page shows (its CSRF token): a
      // prefix must be Juniper's, or a user could make a key whose shown prefix is another user's.
      const page = (await jane.get('/account')).body;
      const csrf = /name="_csrf" value="([^"]+)"/.exec(page)?.[1] ?? '';
      assert.ok(csrf, 'the page carries a CSRF token');
      const chosen = 'AAAAAAAA';
      const minted = `${chosen}.${createHmac('sha256', csrf).update(`account-api-key:${w.jane.id}:${chosen}`).digest('hex')}`;
      const mintedNew = `${chosen}.${createHmac('sha256', csrf).update(`account-api-key:${w.jane.id}:${csrf}:${chosen}`).digest('hex')}`;
      for (const nonce of ['', 'x', altered, johns, minted, mintedNew]) {
        const res = await jane.post('/account/api-keys', { name: 'forged', nonce }, { follow: false });
        assert.equal(res.statusCode, 400, `${nonce}: ${res.body.slice(0, 200)}`);
        assert.match(res.body, /This form is out of date or was not shown by this session: no key was created/);
      }
      assert.equal((await janesKeys()).length, before);
    });
  });
}
