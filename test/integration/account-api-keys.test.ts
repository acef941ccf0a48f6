// The Account page's Create API key over HTTP, as a browser without JavaScript posts it: the new key is
// shown once, in the POST's own answer (never a cookie or a URL), and a resubmission of that form (a reload,
// back and forward, a double click) creates no second key but says which key the first one made. The form asks
// for the current password (a key outlives sign-out and password changes, so a session alone must not mint
// one), through the sign-in throttle, as Change password does; so does POST /api/v1/api-keys from a session.
// Both databases.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';
import { cliActor } from '../../src/audit/audit-log.js';
import { SignIn } from '../../src/users/sign-in.js';
import { MAX_PAIR_FAILURES, SignInThrottle } from '../../src/users/sign-in-throttle.js';
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
    beforeEach(() => {
      // A fresh throttle per test, so one test's failures do not refuse the next; the slow-down is recorded
      // instead of slept (its lengths are unit-tested).
      delays = [];
      w.t.app.services.signIn = new SignIn(w.t.app.services.users, new SignInThrottle(), async (ms) => delays.push(ms));
    });
    let delays: number[] = [];

    const janesKeys = async () => w.t.app.services.apiKeys.list(w.jane.id);
    /** Every api_keys row, every column: a refused post must leave them as they were. */
    const keyRows = async () => w.t.app.database.db.selectFrom('api_keys').selectAll().orderBy('id').execute();
    const passwordError = (body: string) => /<p class="help error-text" id="key-password-error" role="alert">([^<]*)<\/p>/.exec(body)?.[1];

    it('shows the new key once and makes no second key when the same form is posted again', async () => {
      const before = (await janesKeys()).length;
      const form = await jane.get('/account');
      const nonce = nonceOf(form.body);
      assert.ok(nonce, 'the form carries a nonce');

      const first = await jane.post('/account/api-keys', { name: 'ERP', nonce, password: w.jane.password }, { follow: false });
      assert.equal(first.statusCode, 200, first.body);
      const key = /<code id="new-key">([^<]+)<\/code>/.exec(first.body)?.[1] ?? '';
      assert.match(key, /^jnp_[A-Za-z0-9]{8}_/);
      assert.equal(await w.t.app.services.apiKeys.resolve(key).then((u) => u?.id), w.jane.id, 'the key shown works');
      assert.equal(String(first.headers['cache-control']), 'no-store');
      assert.equal(first.headers.location, undefined);
      assert.ok(!first.cookies.some((c: { value: string }) => c.value.includes(key)), 'the key is in no cookie');

      // The reload: the browser posts the very same body again.
      const again = await jane.post('/account/api-keys', { name: 'ERP', nonce, password: w.jane.password }, { follow: false });
      assert.equal(again.statusCode, 409, again.body);
      assert.doesNotMatch(again.body, /id="new-key"/);
      assert.ok(!again.body.includes(key.slice(14)), 'the key is not shown a second time');
      assert.match(again.body, /This form was already submitted: key ERP \(jnp_[A-Za-z0-9]{8}…\) was created by the first one, and a reload or second click shows this page instead of the key\. If you did not copy it, revoke it and create another\./);
      const keys = await janesKeys();
      assert.equal(keys.length, before + 1, 'one key, not two');
      assert.equal(keys.filter((k) => k.name === 'ERP' && !k.revoked).length, 1);

      // The same replay without the password: refused for it, before anything tells of the key the form made.
      const bare = await jane.post('/account/api-keys', { name: 'ERP', nonce }, { follow: false });
      assert.equal(bare.statusCode, 400, bare.body);
      assert.doesNotMatch(bare.body, /already submitted/);
      assert.equal((await janesKeys()).length, before + 1);
    });

    it('refuses a missing or wrong password: no key, the reason beside the field, the name typed kept, the password not shown', async () => {
      const before = await keyRows();
      const nonce = nonceOf((await jane.get('/account')).body);
      const cases = [
        { password: '', status: 400, says: 'Enter your current password to create an API key: no key was created.' },
        { password: `${w.jane.password}-typo`, status: 400, says: 'That is not your current password: no key was created. Type the password you sign in with and create the key again.' },
      ];
      for (const c of cases) {
        const res = await jane.post('/account/api-keys', { name: 'Backup <nightly>', nonce, password: c.password }, { follow: false });
        assert.equal(res.statusCode, c.status, res.body);
        assert.equal(passwordError(res.body), c.says);
        assert.match(res.body, /id="key-password" name="password" autocomplete="current-password" required aria-invalid="true" aria-describedby="key-password-error" autofocus>/);
        assert.match(res.body, /id="key-name" name="name" value="Backup &lt;nightly&gt;"/, 'the name typed is kept');
        assert.doesNotMatch(res.body, /id="new-key"/);
        if (c.password) assert.ok(!res.body.includes(c.password), 'the password typed is not shown');
        assert.ok(!res.body.includes(w.jane.password), 'nor the real one');
        assert.equal(res.headers.location, undefined);
        assert.deepEqual(await keyRows(), before, 'no api_keys row was added or changed');
      }
      // A refusal does not use the form up: with the right password the same nonce makes its key.
      const ok = await jane.post('/account/api-keys', { name: 'Backup <nightly>', nonce, password: w.jane.password }, { follow: false });
      assert.equal(ok.statusCode, 200, ok.body);
      assert.match(ok.body, /id="new-key"/);
      assert.equal((await keyRows()).length, before.length + 1);
      // The field as the password manager sees it, with no refusal once the key was made.
      assert.equal(passwordError(ok.body), undefined);
      assert.match(ok.body, /<label for="key-password">Current password<\/label><input type="password" id="key-password" name="password" autocomplete="current-password" required>/);
    });

    it(`counts a wrong password as a failed sign-in: after ${MAX_PAIR_FAILURES} the form refuses even the right one (429), and so does the sign-in page`, async () => {
      const before = await keyRows();
      // Empty fields are no attempt: they use up nothing.
      for (let i = 0; i < MAX_PAIR_FAILURES; i++) {
        assert.equal((await jane.post('/account/api-keys', { name: 'empty', nonce: nonceOf((await jane.get('/account')).body), password: '' }, { follow: false })).statusCode, 400);
      }
      for (let i = 0; i < MAX_PAIR_FAILURES; i++) {
        const res = await jane.post('/account/api-keys', { name: 'guess', nonce: nonceOf((await jane.get('/account')).body), password: `guess-${i}` }, { follow: false });
        assert.equal(res.statusCode, 400, `guess ${i}: ${res.body.slice(0, 200)}`);
      }
      assert.ok(delays.length > 0, 'the later guesses were slowed down as sign-ins are');
      const right = await jane.post('/account/api-keys', { name: 'guess', nonce: nonceOf((await jane.get('/account')).body), password: w.jane.password }, { follow: false });
      assert.equal(right.statusCode, 429, right.body);
      assert.equal(
        passwordError(right.body),
        'No key was created. Too many failed sign-ins for this login from your address; wait 15 minutes and try again, or ask an admin to set a new password on the Users page, which lifts this at once.',
      );
      assert.match(right.body, /id="key-name" name="name" value="guess"/);
      assert.deepEqual(await keyRows(), before, 'no key was made, not even with the right password');
      // The same counters as the sign-in page: from this address jane cannot sign in either, for now.
      const login = await new FormBrowser(w.http).post('/login', { login: w.jane.login, password: w.jane.password, next: '/' }, { csrf: false, follow: false });
      assert.equal(login.statusCode, 429, login.body.slice(0, 300));
      // Her session still works (the throttle refuses passwords, not sessions).
      assert.equal((await jane.get('/account')).statusCode, 200);
    });

    it('Change password, which asks the same way (SignIn.confirm), changes nothing for a wrong current password and is refused by the same throttle', async () => {
      const hash = async () => (await w.t.app.services.users.findById(w.jane.id))?.password_hash;
      const before = await hash();
      const change = (current: string) => jane.post('/account/password', { current, password: 'jane-new-password-123' }, { follow: false });
      const wrong = await change('not-janes-password');
      assert.equal(wrong.statusCode, 400, wrong.body);
      assert.match(wrong.body, /The current password is not right: nothing was changed\./);
      for (let i = 1; i < MAX_PAIR_FAILURES; i++) assert.equal((await change(`guess-${i}`)).statusCode, 400);
      const throttled = await change(w.jane.password);
      assert.equal(throttled.statusCode, 429, throttled.body);
      assert.match(throttled.body, /Too many failed sign-ins for this login from your address/);
      assert.equal(await hash(), before, 'the password is unchanged');
    });

    it('POST /api/v1/api-keys with a session asks for the password as the form does; with an API key it does not', async () => {
      const session = w.jane.session;
      const post = (payload: object, headers: Record<string, string> = { cookie: session.cookie, 'x-csrf-token': session.csrfToken }) =>
        w.http.inject({ method: 'POST', url: '/api/v1/api-keys', headers, payload });
      const before = await keyRows();
      const refusals = [
        { payload: { name: 'script' }, status: 400, code: 'JUNIPER_ERR_VALIDATION', says: /send your current password as "password".*No key was created/ },
        { payload: { name: 'script', password: '' }, status: 400, code: 'JUNIPER_ERR_VALIDATION', says: /send your current password as "password"/ },
        { payload: { name: 'script', password: `${w.jane.password}-typo` }, status: 403, code: 'JUNIPER_ERR_FORBIDDEN', says: /"password" is not your current password: no key was created/ },
      ];
      for (const r of refusals) {
        const res = await post(r.payload);
        assert.equal(res.statusCode, r.status, res.body);
        const { error } = res.json<{ error: { code: string; message: string; field?: string } }>();
        assert.equal(error.code, r.code);
        assert.equal(error.field, 'password');
        assert.match(error.message, r.says);
        assert.ok(!res.body.includes(w.jane.password), 'no password in the answer');
      }
      assert.deepEqual(await keyRows(), before, 'no api_keys row was added or changed');

      const ok = await post({ name: 'script', password: w.jane.password });
      assert.equal(ok.statusCode, 201, ok.body);
      assert.equal(await w.t.app.services.apiKeys.resolve(ok.json<{ key: string }>().key).then((u) => u?.id), w.jane.id);
      const byKey = await post({ name: 'by key' }, { authorization: `Bearer ${w.jane.apiKey}` });
      assert.equal(byKey.statusCode, 201, byKey.body);
      assert.equal((await keyRows()).length, before.length + 2);

      // The same throttle: once the pair is used up, even the right password is refused (429) and makes nothing.
      for (let i = 0; i < MAX_PAIR_FAILURES; i++) assert.equal((await post({ name: 'guess', password: `guess-${i}` })).statusCode, 403);
      const throttled = await post({ name: 'guess', password: w.jane.password });
      assert.equal(throttled.statusCode, 429, throttled.body);
      assert.match(throttled.json<{ error: { message: string } }>().error.message, /^No key was created\. Too many failed sign-ins for this login from your address/);
      assert.equal((await keyRows()).length, before.length + 2);
    });

    it('makes one key when the same form is posted twice at once (a double click)', async () => {
      const before = (await janesKeys()).length;
      const nonce = nonceOf((await jane.get('/account')).body);
      const answers = await Promise.all([1, 2].map(() => jane.post('/account/api-keys', { name: 'twice', nonce, password: w.jane.password }, { follow: false })));
      assert.deepEqual(answers.map((a) => a.statusCode).sort(), [200, 409]);
      assert.equal((await janesKeys()).length, before + 1);
    });

    it('creates a new key from each freshly shown form, including the one the answer shows', async () => {
      const before = (await janesKeys()).length;
      const first = await jane.post('/account/api-keys', { name: 'one', nonce: nonceOf((await jane.get('/account')).body), password: w.jane.password }, { follow: false });
      assert.equal(first.statusCode, 200, first.body);
      const second = await jane.post('/account/api-keys', { name: 'two', nonce: nonceOf(first.body), password: w.jane.password }, { follow: false });
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
        const res = await jane.post('/account/api-keys', { name: 'forged', nonce, password: w.jane.password }, { follow: false });
        assert.equal(res.statusCode, 400, `${nonce}: ${res.body.slice(0, 200)}`);
        assert.match(res.body, /This form is out of date or was not shown by this session: no key was created/);
      }
      assert.equal((await janesKeys()).length, before);
    });

    it('a new password an admin sets on the Users page lifts the refusal at once, as its message says; the old one stays refused', async () => {
      const address = new FormBrowser(w.http);
      for (let i = 0; i < MAX_PAIR_FAILURES; i++) await address.post('/login', { login: w.jane.login, password: `guess-${i}`, next: '/' }, { csrf: false, follow: false });
      const refused = await address.post('/login', { login: w.jane.login, password: w.jane.password, next: '/' }, { csrf: false, follow: false });
      assert.equal(refused.statusCode, 429, refused.body.slice(0, 300));
      assert.match(refused.body, /ask an admin to set a new password on the Users page, which lifts this at once/);
      const admin = new FormBrowser(w.http);
      await admin.signIn(w.admin.login, w.admin.password);
      await admin.post('/users/confirm', { password: w.admin.password });
      const newPassword = 'jane-reset-password-456';
      const reset = await admin.post('/users/password', { login: w.jane.login, password: newPassword }, { follow: false });
      assert.equal(reset.statusCode, 303, reset.body.slice(0, 300));
      const old = await address.post('/login', { login: w.jane.login, password: w.jane.password, next: '/' }, { csrf: false, follow: false });
      assert.equal(old.statusCode, 401, 'the old password is just wrong now');
      const signedIn = await address.post('/login', { login: w.jane.login, password: newPassword, next: '/' }, { csrf: false, follow: false });
      assert.equal(signedIn.statusCode, 303, signedIn.body.slice(0, 300));
      // Back to the world's password, and a fresh session for jane (the reset ended hers).
      await w.t.app.services.users.setPassword(w.jane.login, w.jane.password, cliActor);
      jane = new FormBrowser(w.http);
      await jane.signIn(w.jane.login, w.jane.password);
    });
  });
}
