// Users (admins: create, role, reset password, disable) and Account (everyone: own password, own API keys,
// own personal servers). Passwords and API keys are never shown back, except a new key once, at creation.
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Services } from '../services.js';
import { actorOf } from '../http/actor.js';
import { AppError } from '../lib/errors.js';
import { KEY_PREFIX_PATTERN, newKeyPrefix } from '../users/api-keys.js';
import type { PasswordRefusal } from '../users/sign-in.js';
import { timingSafeEqualStr } from '../vault/hmac.js';
import { csrfField, formError, pageContext, redirectWithFlash, renderPage, text, type Form } from './forms.js';
import { html, type SafeHtml } from './html.js';
import { flashHtml, type PageContext } from './layout.js';

/** The password asked again before an admin's session adds a way in (recent-confirmations.ts), or until when it holds. */
function confirmCard(ctx: PageContext, confirmedUntil: number | undefined, error?: string): SafeHtml {
  if (confirmedUntil !== undefined) {
    return html`<p class="muted" id="users-confirmed">Your password was confirmed: you may create users, make admins, enable accounts and set passwords until ${new Date(confirmedUntil).toISOString().slice(11, 16)} UTC.</p>`;
  }
  return html`<form method="post" action="/users/confirm" class="card" id="users-confirm">
  ${csrfField(ctx)}
  <h2>Confirm your password</h2>
  <p class="help">Creating a user, making an admin, enabling an account and setting a password give someone a lasting way in, so they ask your own password again; then, for 10 minutes, not again.</p>
  <label for="confirm-password">Your password</label>
  <input type="password" id="confirm-password" name="password" autocomplete="current-password" required${error ? html` aria-invalid="true" aria-describedby="confirm-password-error" autofocus` : null}>
  ${error ? html`<p class="help error-text" id="confirm-password-error" role="alert">${error}</p>` : null}
  <button type="submit">Confirm</button>
</form>`;
}

function usersBody(ctx: PageContext, users: Awaited<ReturnType<Services['users']['list']>>, error?: string, entered: Form = {}, confirm: SafeHtml | null = null): SafeHtml {
  const rows = users.map(
    (u) => html`<tr>
  <td><strong>${u.login}</strong><span class="sub">${u.name}</span></td>
  <td>${u.email}</td>
  <td>${u.role}</td>
  <td>${u.active ? html`<span class="tag tag-green">Active</span>` : html`<span class="tag tag-grey">Disabled</span>`}</td>
  <td><div class="actions">
    <form method="post" action="/users/access" class="inline">${csrfField(ctx)}<input type="hidden" name="login" value="${u.login}">
      <input type="hidden" name="role" value="${u.role === 'admin' ? 'user' : 'admin'}"><button type="submit" class="secondary small">Make ${u.role === 'admin' ? 'user' : 'admin'}</button></form>
    <form method="post" action="/users/access" class="inline">${csrfField(ctx)}<input type="hidden" name="login" value="${u.login}">
      <input type="hidden" name="active" value="${u.active ? '0' : '1'}"><button type="submit" class="${u.active ? 'danger' : 'secondary'} small">${u.active ? 'Disable' : 'Enable'}</button></form>
    <form method="post" action="/users/password" class="inline reset">${csrfField(ctx)}<input type="hidden" name="login" value="${u.login}">
      <label class="visually-hidden" for="reset-${u.id}">New password for ${u.login}</label>
      <input type="password" id="reset-${u.id}" name="password" autocomplete="new-password" placeholder="New password" required minlength="10">
      <button type="submit" class="secondary small">Reset password</button></form>
  </div></td>
</tr>`,
  );
  return html`<div class="page-head"><h1>Users</h1></div>
${error ? flashHtml({ kind: 'error', text: error }) : null}
${confirm}
<div class="card table-card"><table>
  <thead><tr><th>Login</th><th>Email</th><th>Role</th><th>Status</th><th><span class="visually-hidden">Actions</span></th></tr></thead>
  <tbody>${rows}</tbody></table></div>
<form method="post" action="/users" class="card">
  ${csrfField(ctx)}
  <h2>New user</h2>
  <div class="grid">
    <div><label for="new-login">Login</label><input type="text" id="new-login" name="login" value="${text(entered, 'login')}" required></div>
    <div><label for="new-email">Email</label><input type="email" id="new-email" name="email" value="${text(entered, 'email')}" required></div>
    <div><label for="new-name">Name</label><input type="text" id="new-name" name="name" value="${text(entered, 'name')}"></div>
    <div><label for="new-password">Password (at least 10 characters)</label><input type="password" id="new-password" name="password" autocomplete="new-password" required></div>
    <div><label for="new-role">Role</label><select id="new-role" name="role"><option value="user">User</option><option value="admin"${text(entered, 'role') === 'admin' ? html` selected` : null}>Admin</option></select></div>
  </div>
  <button type="submit">Create user</button>
</form>`;
}

/**
 * The Create API key form's one-time nonce: the prefix its key will get, with an HMAC under the vault's key
 * (secret to the server, the same in every process) over the user, the session's CSRF token and the prefix.
 * So only Juniper can choose a prefix, and a nonce is good for this session and user only. The first post
 * with it creates the key; a resubmission finds that key by its prefix and creates nothing. No table needed:
 * the api_keys row is the record that the nonce was used.
 */
function keyFormNonce(sign: (data: string) => string, ctx: PageContext, prefix = newKeyPrefix()): string {
  return `${prefix}.${sign(`account-api-key:${ctx.user?.id}:${ctx.csrfToken ?? ''}:${prefix}`)}`;
}

/** The prefix a nonce from keyFormNonce carries, or undefined for a missing, altered or foreign one. */
function prefixOfNonce(sign: (data: string) => string, ctx: PageContext, nonce: string): string | undefined {
  const prefix = nonce.split('.')[0] ?? '';
  return KEY_PREFIX_PATTERN.test(prefix) && timingSafeEqualStr(nonce, keyFormNonce(sign, ctx, prefix)) ? prefix : undefined;
}

/** What the Create API key form shows again after a refusal: the name typed, the reason beside the password. */
interface KeyForm {
  name: string;
  passwordError?: string;
}

/**
 * The Create API key form's password field. A refusal is shown beside it and the field takes the focus; the
 * password typed is never echoed, so it is typed again there.
 */
function keyPasswordInput(error: string | undefined): SafeHtml {
  const label = html`<label for="key-password">Current password</label>`;
  if (!error) return html`${label}<input type="password" id="key-password" name="password" autocomplete="current-password" required>`;
  return html`${label}<input type="password" id="key-password" name="password" autocomplete="current-password" required aria-invalid="true" aria-describedby="key-password-error" autofocus>
      <p class="help error-text" id="key-password-error" role="alert">${error}</p>`;
}

/** The refusal of the Create API key form's password, worded for it, with the status the answer gets. */
function keyPasswordRefusal(refusal: PasswordRefusal): { message: string; status: number } {
  switch (refusal.reason) {
    case 'missing':
      return { message: 'Enter your current password to create an API key: no key was created.', status: 400 };
    case 'wrong':
      return { message: 'That is not your current password: no key was created. Type the password you sign in with and create the key again.', status: 400 };
    case 'throttled':
      return { message: `No key was created. ${refusal.message}`, status: 429 };
  }
}

export function usersPage(services: Pick<Services, 'apiKeys' | 'incomingServers' | 'outgoingServers' | 'signIn' | 'users' | 'sign'>): FastifyPluginAsync {
  const { users, apiKeys } = services;

  async function renderUsers(request: FastifyRequest, reply: FastifyReply, error?: string, entered?: Form, status = 200, confirmError?: string) {
    const ctx = pageContext(request, reply, 'users');
    const session = request.principal?.session;
    const confirm = session ? confirmCard(ctx, services.signIn.recent.confirmedUntil(session.id), confirmError) : null;
    return renderPage(reply, 'Users', usersBody(ctx, await users.list(), error, entered, confirm), ctx, status);
  }

  /**
   * Whether this request may add a way in without being asked for the password: a browser session whose admin
   * confirmed it lately. (A caller with an API key holds a lasting credential already.)
   */
  const confirmed = (request: FastifyRequest): boolean => {
    const session = request.principal?.session;
    return request.principal?.via !== 'session' || (session !== undefined && services.signIn.recent.confirmedUntil(session.id) !== undefined);
  };
  const NOT_CONFIRMED = 'Confirm your password at the top of this page first (it is asked again before a new user, a new admin, an account enabled or a password set, then not for 10 minutes): nothing was changed.';

  async function renderAccount(
    request: FastifyRequest,
    reply: FastifyReply,
    opts: { error?: string; warning?: string; newKey?: string; status?: number; keyForm?: KeyForm } = {},
    ctx = pageContext(request, reply, 'account'),
  ) {
    const user = request.principal!.user;
    const [keys, outgoing, incoming] = await Promise.all([
      apiKeys.list(user.id),
      services.outgoingServers.list({ ownerUserId: user.id }),
      services.incomingServers.list({ ownerUserId: user.id }),
    ]);
    const mine = <T extends { owner_user_id: number | null }>(rows: T[]) => rows.filter((r) => r.owner_user_id === user.id);
    const body = html`<div class="page-head"><h1>Your account</h1></div>
<p class="muted">Signed in as <code>${user.login}</code> (${user.email}).</p>
${opts.error ? flashHtml({ kind: 'error', text: opts.error }) : null}
${opts.warning ? flashHtml({ kind: 'warning', text: opts.warning }) : null}
${opts.newKey
  ? html`<div class="flash flash-success" role="status">New API key (shown only now, copy it): <code id="new-key">${opts.newKey}</code></div>`
  : null}
<form method="post" action="/account/password" class="card">
  ${csrfField(ctx)}
  <h2>Password</h2>
  <div class="grid">
    <div><label for="current-password">Current password</label><input type="password" id="current-password" name="current" autocomplete="current-password" required></div>
    <div><label for="account-password">New password (at least 10 characters)</label><input type="password" id="account-password" name="password" autocomplete="new-password" required minlength="10"></div>
  </div>
  <p class="help">Changing it signs you out of every browser. Your API keys below stay valid: revoke any you no longer trust.</p>
  <button type="submit">Change password</button>
</form>
<div class="card">
  <h2>API keys</h2>
  ${keys.length === 0
    ? html`<p class="muted">No API key yet.</p>`
    : html`<table><thead><tr><th>Name</th><th>Key</th><th>Last used</th><th><span class="visually-hidden">Actions</span></th></tr></thead><tbody>
    ${keys.map(
      (k) => html`<tr><td>${k.name}</td><td><code>${k.prefix}…</code></td><td>${k.lastUsedAt ?? 'never'}</td>
      <td>${k.revoked ? html`<span class="tag tag-grey">Revoked</span>` : html`<form method="post" action="/account/api-keys/revoke" class="inline">${csrfField(ctx)}<input type="hidden" name="keyId" value="${k.id}"><button type="submit" class="danger small">Revoke ${k.name}</button></form>`}</td></tr>`,
    )}</tbody></table>`}
  <form method="post" action="/account/api-keys">
    ${csrfField(ctx)}<input type="hidden" name="nonce" value="${keyFormNonce(services.sign, ctx)}">
    <div class="grid">
      <div><label for="key-name">New key name</label><input type="text" id="key-name" name="name" value="${opts.keyForm?.name ?? ''}" required placeholder="ERP"></div>
      <div>${keyPasswordInput(opts.keyForm?.passwordError)}</div>
    </div>
    <p class="help">A key stays valid after you sign out or change your password, so creating one asks for your password again.</p>
    <button type="submit">Create API key</button>
  </form>
</div>
<div class="card">
  <h2>Your personal servers</h2>
  <ul>
    ${mine(outgoing).map((s) => html`<li><a href="/outgoing-servers/${s.id}">${s.name}</a> <span class="muted">outgoing</span></li>`)}
    ${mine(incoming).map((s) => html`<li><a href="/incoming-servers/${s.id}">${s.name}</a> <span class="muted">incoming</span></li>`)}
  </ul>
  <p><a class="button secondary" href="/outgoing-servers/new">New outgoing server</a> <a class="button secondary" href="/incoming-servers/new">New incoming server</a></p>
</div>`;
    return renderPage(reply, 'Your account', body, ctx, opts.status ?? 200);
  }

  return async (app) => {
    app.get('/users', { config: { access: 'admin' } }, async (request, reply) => renderUsers(request, reply));

    app.post<{ Body: Form }>('/users/confirm', { config: { access: 'admin' } }, async (request, reply) => {
      const session = request.principal!.session;
      if (!session) return redirectWithFlash(reply, '/users', { kind: 'error', text: 'Only a browser session is asked to confirm its password.' });
      const refused = await services.signIn.confirm(request.principal!.user.login, text(request.body, 'password'), request.ip);
      if (refused?.reason === 'throttled') return renderUsers(request, reply, undefined, undefined, 429, refused.message);
      if (refused) return renderUsers(request, reply, undefined, undefined, 400, refused.reason === 'missing' ? 'Enter your password.' : 'That is not your password: type the password you sign in with.');
      services.signIn.recent.confirm(session.id);
      return redirectWithFlash(reply, '/users', { kind: 'success', text: 'Password confirmed for 10 minutes.' });
    });

    app.post<{ Body: Form }>('/users', { config: { access: 'admin' } }, async (request, reply) => {
      const b = request.body ?? {};
      if (!confirmed(request)) return renderUsers(request, reply, NOT_CONFIRMED, { ...b, password: '' }, 403);
      try {
        const role = text(b, 'role') === 'admin' ? 'admin' : 'user';
        await users.create({ login: text(b, 'login'), email: text(b, 'email'), name: text(b, 'name'), password: text(b, 'password'), role }, actorOf(request));
      } catch (e) {
        const err = formError(e);
        return renderUsers(request, reply, err.message, { ...b, password: '' }, err.status);
      }
      return redirectWithFlash(reply, '/users', { kind: 'success', text: `User ${text(b, 'login').trim().toLowerCase()} created.` });
    });

    app.post<{ Body: Form }>('/users/access', { config: { access: 'admin' } }, async (request, reply) => {
      const b = request.body ?? {};
      const login = text(b, 'login');
      const role = text(b, 'role');
      const active = text(b, 'active');
      // Making a user an admin or enabling an account adds a way in; demoting and disabling do not, and must not wait.
      if ((role === 'admin' || active === '1') && !confirmed(request)) return redirectWithFlash(reply, '/users', { kind: 'error', text: NOT_CONFIRMED });
      try {
        await users.setAccess(login, { ...(role === 'admin' || role === 'user' ? { role } : {}), ...(active !== '' ? { active: active === '1' } : {}) }, actorOf(request));
      } catch (e) {
        return redirectWithFlash(reply, '/users', { kind: 'error', text: formError(e).message });
      }
      return redirectWithFlash(reply, '/users', { kind: 'success', text: `User ${login} changed.` });
    });

    app.post<{ Body: Form }>('/users/password', { config: { access: 'admin' } }, async (request, reply) => {
      const login = text(request.body, 'login');
      if (!confirmed(request)) return redirectWithFlash(reply, '/users', { kind: 'error', text: NOT_CONFIRMED });
      try {
        await users.setPassword(login, text(request.body, 'password'), actorOf(request));
      } catch (e) {
        return redirectWithFlash(reply, '/users', { kind: 'error', text: formError(e).message });
      }
      // The sign-in refusal for too many failures points here: the new password works at once.
      services.signIn.passwordReset(login);
      return redirectWithFlash(reply, '/users', { kind: 'success', text: `Password of ${login} reset; their sessions ended.` });
    });

    app.get('/account', { config: { access: 'user' } }, async (request, reply) => renderAccount(request, reply));

    app.post<{ Body: Form }>('/account/password', { config: { access: 'user' } }, async (request, reply) => {
      const user = request.principal!.user;
      // Through the sign-in throttle: a stolen session must not become an unlimited password oracle.
      const refused = await services.signIn.confirm(user.login, text(request.body, 'current'), request.ip);
      if (refused?.reason === 'throttled') return renderAccount(request, reply, { error: refused.message, status: 429 });
      if (refused) return renderAccount(request, reply, { error: 'The current password is not right: nothing was changed.', status: 400 });
      try {
        await users.setPassword(user.login, text(request.body, 'password'), actorOf(request));
      } catch (e) {
        const err = formError(e);
        return renderAccount(request, reply, { error: err.message, status: err.status });
      }
      // The change ended every session, this one too: sign in with the new password.
      return redirectWithFlash(reply, '/login', { kind: 'success', text: 'Password changed. Sign in with the new one.' });
    });

    app.post<{ Body: Form }>('/account/api-keys', { config: { access: 'user' } }, async (request, reply) => {
      const user = await users.findById(request.principal!.user.id);
      if (!user) throw new AppError('JUNIPER_ERR_NOT_FOUND', 'Your user no longer exists.');
      const ctx = pageContext(request, reply, 'account');
      const name = text(request.body, 'name');
      const prefix = prefixOfNonce(services.sign, ctx, text(request.body, 'nonce'));
      if (!prefix) {
        return renderAccount(request, reply, { error: 'This form is out of date or was not shown by this session: no key was created. Create the key again below.', status: 400, keyForm: { name } }, ctx);
      }
      // A key outlives sign-out and password changes: whoever holds the session for a moment (an unlocked
      // laptop, a stolen cookie) must not turn it into a lasting credential without the password. Checked
      // before createOnce looks for the key a used nonce made, so a replay without it learns nothing of that key.
      const refused = await services.signIn.confirm(user.login, text(request.body, 'password'), request.ip);
      if (refused) {
        const { message, status } = keyPasswordRefusal(refused);
        return renderAccount(request, reply, { status, keyForm: { name, passwordError: message } }, ctx);
      }
      try {
        // Rendered in this answer, not redirected: the key must not travel in a cookie or URL. A reload posts
        // the same nonce again and gets the message below instead of a second key.
        const result = await apiKeys.createOnce(user, name.trim() || 'key', actorOf(request), prefix);
        if (result.created) return await renderAccount(request, reply, { newKey: result.key }, ctx);
        const warning = `This form was already submitted: key ${result.view.name} (${result.view.prefix}…) was created by the first one, and a reload or second click shows this page instead of the key. If you did not copy it, revoke it and create another.`;
        return await renderAccount(request, reply, { warning, status: 409 }, ctx);
      } catch (e) {
        const err = formError(e);
        return renderAccount(request, reply, { error: err.message, status: err.status, keyForm: { name } }, ctx);
      }
    });

    app.post<{ Body: Form }>('/account/api-keys/revoke', { config: { access: 'user' } }, async (request, reply) => {
      const id = Number(text(request.body, 'keyId'));
      const own = (await apiKeys.list(request.principal!.user.id)).find((k) => k.id === id);
      if (!own) throw new AppError('JUNIPER_ERR_NOT_FOUND', `You have no API key with id ${text(request.body, 'keyId')}.`);
      await apiKeys.revoke(own.id, actorOf(request));
      return redirectWithFlash(reply, '/account', { kind: 'success', text: `API key ${own.name} revoked.` });
    });
  };
}
