// The new pages' server side on both databases (the browser tests run on SQLite): Inbox search through
// the SQL it adds (case-insensitive, LIKE wildcards taken literally, visibility kept), compose through the
// queue with a user's own From whatever was posted, the mail page's access rule, the Route checker, and
// the Users page's role / disable with the last-admin guard.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cliActor } from '../../src/audit/audit-log.js';
import { dialects } from '../helpers/databases.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { testDispatcher } from '../helpers/outgoing.js';
import { startWorld, type World } from '../helpers/world.js';
import { startSmtpSink } from '../peers/smtp-sink.js';

for (const dialect of dialects) {
  describe(`new UI pages (${dialect})`, () => {
    let w: World;
    let admin: FormBrowser;
    let jane: FormBrowser;
    let john: FormBrowser;

    before(async () => {
      w = await startWorld(dialect);
      admin = new FormBrowser(w.http);
      jane = new FormBrowser(w.http);
      john = new FormBrowser(w.http);
      await admin.signIn(w.admin.login, w.admin.password);
      await jane.signIn(w.jane.login, w.jane.password);
      await john.signIn(w.john.login, w.john.password);
    });
    after(async () => w?.close());

    it('searches the Inbox by subject, sender and text, ignoring case and taking % and _ literally, within what each user may see', async () => {
      for (const q of ['order 1234', 'ORDER', 'a customer']) {
        const res = await admin.get(`/inbox?q=${encodeURIComponent(q)}`);
        assert.equal(res.statusCode, 200, res.body);
        assert.match(res.body, />Order 1234</, q);
      }
      for (const q of ['%', '_rder', 'no such words']) {
        const res = await admin.get(`/inbox?q=${encodeURIComponent(q)}`);
        assert.equal(res.statusCode, 200, res.body);
        assert.doesNotMatch(res.body, />Order 1234</, q);
        assert.match(res.body, /No messages match these filters/, q);
      }
      assert.match((await jane.get('/inbox?q=order')).body, />Order 1234</, 'jane owns the server');
      assert.doesNotMatch((await john.get('/inbox?q=order')).body, />Order 1234</, 'john does not');
    });

    it("queues a composed mail as the user's own address whatever From was posted, and shows its page only to its sender and admins", async () => {
      await jane.get('/compose');
      const res = await jane.post('/compose', { from: 'admin@example.com', to: 'customer@client.test', subject: 'Hello <b>there</b>', text: 'Hi' }, { follow: false });
      assert.equal(res.statusCode, 303, res.body);
      const id = Number(/\/outbox\/(\d+)/.exec(String(res.headers.location))?.[1]);
      const mail = await w.t.app.services.queue.get(id);
      assert.equal(mail.from_header, 'jane <jane@example.com>', 'her name and address, not the posted From');
      assert.equal(mail.created_by_user_id, w.jane.id);
      const page = await jane.get(`/outbox/${id}`);
      assert.equal(page.statusCode, 200);
      assert.match(page.body, /Hello &lt;b&gt;there&lt;\/b&gt;/, 'the subject is shown as text');
      assert.match(page.body, /Server and why/);
      assert.equal((await admin.get(`/outbox/${id}`)).statusCode, 200);
      const other = await john.get(`/outbox/${id}`);
      assert.equal(other.statusCode, 404);
      assert.match(String(other.headers['content-type']), /^text\/html/);
    });

    it("forwards a received message with its kept attachments, and only one the sender may see", async () => {
      const form = await jane.get(`/compose?forward=${w.ids.message}`);
      assert.equal(form.statusCode, 200, form.body);
      assert.match(form.body, /Forwarded with its attachments: order\.txt/);
      const res = await jane.post('/compose', { to: 'customer@client.test', subject: 'Fwd: Order 1234', text: 'See below', forward: String(w.ids.message) }, { follow: false });
      assert.equal(res.statusCode, 303, res.body);
      const id = Number(/\/outbox\/(\d+)/.exec(String(res.headers.location))?.[1]);
      const attachments = await w.t.app.database.db.selectFrom('outgoing_attachments').select(['filename']).where('mail_id', '=', id).execute();
      assert.deepEqual(attachments.map((a) => a.filename), ['order.txt']);
      // john may not read the message, so he cannot forward it (nor learn that it exists).
      const refused = await john.post('/compose', { to: 'customer@client.test', subject: 'x', text: 'y', forward: String(w.ids.message) }, { follow: false });
      assert.equal(refused.statusCode, 404, refused.body);
    });

    it("lists on the mail page the attempt that did not deliver, with the server's reply (migration 017)", async () => {
      const refusing = await startSmtpSink({ auth: 'none', tls: 'none', behaviour: { mailFrom: () => ({ code: 550, message: '5.7.60 SendAsDenied; not allowed to send as this address' }) } });
      const dispatch = testDispatcher(w.t.app);
      try {
        const server = await w.t.app.services.outgoingServers.create(
          { name: 'Refusing relay', auth: 'none', host: '127.0.0.1', port: refusing.port, security: 'none', priority: 10, active: true, allowSelfSigned: false },
          { id: w.admin.id, login: 'admin', email: 'admin@example.com', name: '', role: 'admin' },
          cliActor,
        );
        const { id } = await w.t.app.services.outbox.enqueue({ from: 'news@example.com', to: ['x@example.org'], subject: 'refused', text: 'x', serverId: server.id }, null, cliActor);
        await dispatch.drain();
        const attempts = await w.t.app.services.queue.attemptsOf(id);
        assert.deepEqual(attempts.map((a) => [a.outcome, a.server_id]), [['failed', server.id]]);
        const page = await admin.get(`/outbox/${id}`);
        assert.match(page.body, /<span class="tag tag-red">failed<\/span>/);
        assert.match(page.body, /SendAsDenied/);
        assert.match(page.body, /Refusing relay/);
      } finally {
        await dispatch.close();
        await refusing.stop();
      }
    });

    it('explains a route in the Route checker', async () => {
      assert.equal((await jane.get('/route?from=jane%40example.com')).statusCode, 403, 'users may not see every server');
      const res = await admin.get('/route?from=jane%40example.com');
      assert.equal(res.statusCode, 200, res.body);
      assert.match(res.body, /id="route-result"/);
      assert.match(res.body, /Envelope sender/);
    });

    it('asks the admin\'s own password before a new user, a new admin, an enabled account or a set password; demoting and disabling need none', async () => {
      const page = await admin.get('/users');
      assert.match(page.body, /<form method="post" action="\/users\/confirm" class="card" id="users-confirm">/);
      const users = async () => (await w.t.app.services.users.list()).map((u) => [u.login, u.role, u.active]);
      const before = await users();
      const created = await admin.post('/users', { login: 'mallory', email: 'mallory@example.com', password: 'mallory-password-1', role: 'admin' }, { follow: false });
      assert.equal(created.statusCode, 403, created.body);
      assert.match(created.body, /Confirm your password at the top of this page first .*nothing was changed\./);
      assert.match(created.body, /id="new-login" name="login" value="mallory"/, 'what was typed stays, but the password');
      await admin.post('/users/access', { login: 'jane', role: 'admin' });
      await admin.post('/users/access', { login: 'jane', active: '1' });
      const hash = (await w.t.app.services.users.requireByLogin('jane')).password_hash;
      const reset = await admin.post('/users/password', { login: 'jane', password: 'chosen-by-mallory-1' });
      assert.match(reset.body, /Confirm your password at the top of this page first/);
      assert.equal((await w.t.app.services.users.requireByLogin('jane')).password_hash, hash, 'no password was set');
      assert.deepEqual(await users(), before, 'nothing was changed');
      // Over the API with the session: the same, unless the admin's password comes with it.
      const api = (payload: object) => w.http.inject({ method: 'POST', url: '/api/v1/users', headers: { cookie: w.admin.session.cookie, 'x-csrf-token': w.admin.session.csrfToken }, payload });
      const byApi = await api({ login: 'mallory', email: 'mallory@example.com', password: 'mallory-password-1', role: 'admin' });
      assert.equal(byApi.statusCode, 400, byApi.body);
      assert.equal(byApi.json<{ error: { field?: string } }>().error.field, 'currentPassword');
      assert.equal((await api({ login: 'mallory', email: 'mallory@example.com', password: 'mallory-password-1', currentPassword: 'not-it' })).statusCode, 403);
      assert.deepEqual(await users(), before);
      const withPassword = await api({ login: 'carol', email: 'carol@example.com', password: 'carol-password-1', currentPassword: w.admin.password });
      assert.equal(withPassword.statusCode, 201, withPassword.body);
      const byKey = await w.http.inject({ method: 'POST', url: '/api/v1/users', headers: { authorization: `Bearer ${w.admin.apiKey}` }, payload: { login: 'dave', email: 'dave@example.com', password: 'dave-password-12' } });
      assert.equal(byKey.statusCode, 201, 'an API key is a lasting credential already: not asked');
      // A wrong password is refused beside the field; the right one holds for 10 minutes.
      const wrong = await admin.post('/users/confirm', { password: 'not-the-admins' }, { follow: false });
      assert.equal(wrong.statusCode, 400);
      assert.match(wrong.body, /id="confirm-password-error" role="alert">That is not your password/);
      const ok = await admin.post('/users/confirm', { password: w.admin.password });
      assert.match(ok.body, /Password confirmed for 10 minutes\./);
      assert.match(ok.body, /id="users-confirmed">Your password was confirmed: you may create users, make admins, enable accounts and set passwords until \d\d:\d\d UTC\./);
    });

    it('creates, disables and re-enables a user, and refuses to disable the last active admin', async () => {
      await admin.get('/users');
      await admin.post('/users/confirm', { password: w.admin.password });
      let res = await admin.post('/users', { login: 'Bob', email: 'bob@example.com', name: '<i>Bob</i>', password: 'bob-password-123', role: 'user' });
      assert.match(res.body, /User bob created\./);
      assert.match(res.body, /&lt;i&gt;Bob&lt;\/i&gt;/);
      res = await admin.post('/users/access', { login: 'bob', active: '0' });
      assert.match(res.body, /User bob changed\./);
      assert.equal((await w.t.app.services.users.requireByLogin('bob')).active, 0);
      await admin.post('/users/access', { login: 'bob', active: '1', role: 'admin' });
      const bob = await w.t.app.services.users.requireByLogin('bob');
      assert.deepEqual([bob.active, bob.role], [1, 'admin']);
      await admin.post('/users/access', { login: 'bob', role: 'user' });
      res = await admin.post('/users/access', { login: 'admin', active: '0' });
      assert.match(res.body, /last active admin/);
      assert.equal((await w.t.app.services.users.requireByLogin('admin')).active, 1);
      assert.equal((await jane.post('/users/access', { login: 'jane', role: 'admin' }, { follow: false })).statusCode, 403);
    });

    it("stops a disabled user's API key at its very next request, though it was just verified", async () => {
      const asJohn = () => w.http.inject({ method: 'GET', url: '/api/v1/session', headers: { authorization: `Bearer ${w.john.apiKey}` } });
      assert.equal((await asJohn()).statusCode, 200);
      await w.t.app.services.users.setAccess('john', { active: false }, cliActor);
      assert.equal((await asJohn()).statusCode, 401, 'the cached verification is forgotten');
      await w.t.app.services.users.setAccess('john', { active: true }, cliActor);
      assert.equal((await asJohn()).statusCode, 200);
    });

    it('keeps one admin when the last two are demoted at the same moment', async () => {
      const users = w.t.app.services.users;
      await users.create({ login: 'second', email: 'second@example.com', name: 'Second', password: 'second-password-123', role: 'admin' }, cliActor);
      const outcomes = await Promise.allSettled([users.setAccess('admin', { role: 'user' }, cliActor), users.setAccess('second', { role: 'user' }, cliActor)]);
      assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 1, JSON.stringify(outcomes));
      assert.equal(await users.countActiveAdmins(), 1);
      // Put the fixtures back: admin stays an admin for the other tests.
      if ((await users.requireByLogin('admin')).role !== 'admin') {
        await users.setAccess('admin', { role: 'admin' }, cliActor);
        await users.setAccess('second', { role: 'user' }, cliActor);
      }
      await users.setAccess('second', { active: false }, cliActor);
    });
  });
}
