// The outgoing server form as the Outlook procedure uses it: the "Outlook" checkbox, Name, Username,
// "From Filter", "Connect your Outlook account", the token tag and "Test Connection". Rendering and the
// form ↔ service mapping only; the routes are in outgoing-servers-page.ts.
import type { OutgoingServer } from '../db/schema.js';
import { parseInput } from '../lib/validate.js';
import { OUTLOOK_SMTP_PRESET, createOutgoingServerSchema, patchOutgoingServerSchema, type CreateOutgoingServer, type PatchOutgoingServer } from '../outgoing/server-rules.js';
import type { OutgoingServerView, TokenView } from '../outgoing/servers.js';
import type { SettingsView } from '../settings/settings.js';
import { checked, csrfField, flashHtml, text, type Flash, type Form } from './forms.js';
import { html, type SafeHtml } from './html.js';
import type { PageContext } from './layout.js';

type Security = 'none' | 'starttls' | 'ssl';

/** What the form shows: the stored server, or what was entered when a save was refused (never a password). */
export interface ServerForm {
  name: string;
  outlook: boolean;
  auth: 'none' | 'password';
  host: string;
  port: string;
  security: string;
  username: string;
  fromFilter: string;
  priority: string;
  active: boolean;
  allowSelfSigned: boolean;
  /** Empty = the default for the server's kind. */
  poolSize: string;
  ratePerMinute: string;
}

export function newServerForm(fromFilter = ''): ServerForm {
  return { name: '', outlook: false, auth: 'password', host: '', port: '587', security: 'starttls', username: '', fromFilter, priority: '10', active: true, allowSelfSigned: false, poolSize: '', ratePerMinute: '' };
}

export function formOfServer(s: OutgoingServer): ServerForm {
  return {
    name: s.name,
    outlook: s.auth === 'outlook',
    auth: s.auth === 'none' ? 'none' : 'password',
    host: s.host,
    port: String(s.port),
    security: s.security,
    username: s.username ?? '',
    fromFilter: s.from_filter ?? '',
    priority: String(s.priority),
    active: s.active === 1,
    allowSelfSigned: s.allow_self_signed === 1,
    poolSize: s.pool_size === null ? '' : String(s.pool_size),
    ratePerMinute: s.rate_per_minute === null ? '' : String(s.rate_per_minute),
  };
}

export function formOfPost(body: Form): ServerForm {
  return {
    name: text(body, 'name').trim(),
    outlook: checked(body, 'outlook'),
    auth: text(body, 'auth') === 'none' ? 'none' : 'password',
    host: text(body, 'host').trim(),
    port: text(body, 'port').trim(),
    security: text(body, 'security'),
    username: text(body, 'username').trim(),
    fromFilter: text(body, 'fromFilter').trim(),
    priority: text(body, 'priority').trim(),
    active: checked(body, 'active'),
    allowSelfSigned: checked(body, 'allowSelfSigned'),
    poolSize: text(body, 'poolSize').trim(),
    ratePerMinute: text(body, 'ratePerMinute').trim(),
  };
}

const numberOrUndefined = (v: string) => (v === '' ? undefined : Number(v));
/** An empty field means the default for the server's kind (stored as null). */
const numberOrNull = (v: string) => (v === '' ? null : Number(v));

/** A new server from the form; Outlook servers take the smtp.office365.com:587 STARTTLS preset. */
export function toCreate(f: ServerForm, body: Form): CreateOutgoingServer {
  const password = text(body, 'password');
  return parseInput(
    createOutgoingServerSchema,
    {
      name: f.name,
      auth: f.outlook ? 'outlook' : f.auth,
      ...(f.outlook ? {} : { host: f.host || undefined, port: numberOrUndefined(f.port), security: f.security || undefined }),
      username: f.username || null,
      ...(f.auth === 'password' && !f.outlook && password !== '' ? { password } : {}),
      // Left empty, an Outlook server's filter becomes its mailbox (the service's rule), so omit it then.
      ...(f.fromFilter !== '' ? { fromFilter: f.fromFilter } : {}),
      priority: numberOrUndefined(f.priority),
      active: f.active,
      allowSelfSigned: f.allowSelfSigned,
      poolSize: numberOrNull(f.poolSize),
      ratePerMinute: numberOrNull(f.ratePerMinute),
    },
    'server',
  );
}

/** Changes from the form; an empty password field keeps the stored password. */
export function toPatch(f: ServerForm, body: Form, current: OutgoingServer): PatchOutgoingServer {
  const password = text(body, 'password');
  // Hidden while "Outlook" is ticked, the host fields still post their old values: a server becoming
  // Outlook takes the Microsoft 365 preset, one staying Outlook keeps its host (set by API for tests or relays).
  const connection = f.outlook
    ? current.auth === 'outlook'
      ? {}
      : { ...OUTLOOK_SMTP_PRESET }
    : { host: f.host, port: numberOrUndefined(f.port), security: f.security };
  return parseInput(
    patchOutgoingServerSchema,
    {
      name: f.name,
      auth: f.outlook ? 'outlook' : f.auth,
      ...connection,
      username: f.username || null,
      ...(f.auth === 'password' && !f.outlook && password !== '' ? { password } : {}),
      fromFilter: f.fromFilter || null,
      priority: numberOrUndefined(f.priority),
      active: f.active,
      allowSelfSigned: f.allowSelfSigned,
      poolSize: numberOrNull(f.poolSize),
      ratePerMinute: numberOrNull(f.ratePerMinute),
    },
    'server',
  );
}

export function tokenTag(token: TokenView): SafeHtml {
  // Green only while the token works: an app-wide problem (expired client secret …) stops every server.
  if (token.appProblem) return html`<span class="tag tag-red">Outlook app credentials need attention</span>`;
  if (token.status === 'valid') return html`<span class="tag tag-green">Outlook Token Valid</span>`;
  if (token.status === 'needs_reconnect') return html`<span class="tag tag-red">Outlook Token: reconnect needed</span>`;
  return html`<span class="tag tag-grey">Outlook Token Missing</span>`;
}

export function authLabel(auth: OutgoingServer['auth']): string {
  return auth === 'outlook' ? 'Outlook (OAuth)' : auth === 'password' ? 'Username and password' : 'None';
}

const securityLabels: Record<Security, string> = { starttls: 'STARTTLS (port 587)', ssl: 'SSL/TLS (port 465)', none: 'None (port 25, unencrypted)' };

export interface ServerPage {
  ctx: PageContext;
  /** Undefined for a new server. */
  server?: OutgoingServerView;
  form: ServerForm;
  settings: SettingsView;
  error?: string;
  result?: Flash;
}

function outlookStatus(p: ServerPage, s: OutgoingServerView): SafeHtml {
  const t = s.token;
  const mismatch = t.account && s.username && t.account.toLowerCase() !== s.username.toLowerCase();
  return html`<div class="actions">${tokenTag(t)}
    <button type="submit" form="connect-form" class="secondary">Connect your Outlook account</button></div>
  ${t.status === 'needs_reconnect' && t.error ? html`<p class="flash flash-error">${t.error.message}${t.error.code ? ` (${t.error.code})` : ''} Click Connect your Outlook account to sign in again.</p>` : null}
  ${t.status === 'missing' ? html`<p class="help">Click Connect your Outlook account and sign in to Microsoft as ${s.username ?? 'the mailbox'}.</p>` : null}
  ${t.account && !mismatch ? html`<p class="help">Connected as <strong>${t.account}</strong>.</p>` : null}
  ${mismatch ? html`<p class="flash flash-warning">Connected as ${t.account}; this server's username is ${s.username} — fine for shared mailboxes or send-as rights.</p>` : null}`;
}

function credentialsWarning(p: ServerPage): SafeHtml | null {
  const o = p.settings.outlook;
  if (o.clientId && o.hasClientSecret && p.settings.customEmailServers) return null;
  const where = p.ctx.user?.role === 'admin' ? html`<a href="/settings">General Settings</a>` : html`General Settings (ask an admin)`;
  return html`<p class="flash flash-warning">Outlook needs the Outlook Credentials (Client ID and Client Secret) in ${where} before an account can be connected.</p>`;
}

export function serverFormBody(p: ServerPage): SafeHtml {
  const { ctx, server: s, form: f } = p;
  const action = s ? `/outgoing-servers/${s.id}` : '/outgoing-servers/new';
  const isUser = ctx.user?.role !== 'admin';
  return html`<p class="muted"><a href="/outgoing-servers">Outgoing Email Servers</a> /</p>
<div class="page-head">
  <h1>${s ? s.name : 'New Outgoing Email Server'} ${s?.archived ? html`<span class="tag tag-grey">Archived</span>` : null}</h1>
  ${s
    ? html`<div class="actions">
    <button type="submit" form="test-form" class="secondary">Test Connection</button>
    ${s.archived ? null : html`<button type="submit" form="archive-form" class="danger">Archive</button>`}
  </div>`
    : null}
</div>
${p.error ? flashHtml({ kind: 'error', text: p.error }) : null}
${flashHtml(p.result)}
<form method="post" action="${action}" class="card" id="server-form">
  ${csrfField(ctx)}
  <div class="grid">
    <div><label for="name">Name</label><input type="text" id="name" name="name" value="${f.name}" required placeholder="Microsoft 365 notifications"></div>
    <div><label for="priority">Priority</label><input type="number" id="priority" name="priority" value="${f.priority}" min="0" max="10000">
      <p class="help">Lower is tried first when several servers match.</p></div>
  </div>
  <label class="check"><input type="checkbox" id="outlook" name="outlook" value="on"${f.outlook ? html` checked` : null} data-reveal="outlook-fields" data-conceal="connection-fields">
    <span>Outlook<small>Microsoft 365 or Outlook.com, signing in with OAuth instead of a password (${OUTLOOK_SMTP_PRESET.host}:${OUTLOOK_SMTP_PRESET.port}, STARTTLS).</small></span></label>

  <div id="outlook-fields"${f.outlook ? null : html` hidden`}>
    ${credentialsWarning(p)}
    ${s && s.auth === 'outlook'
      ? html`${outlookStatus(p, s)}<p class="help">Sends through ${s.host}:${s.port} (${s.security.toUpperCase()}).</p>`
      : html`<p class="help">Save the server, then click Connect your Outlook account.</p>`}
  </div>

  <div id="connection-fields"${f.outlook ? html` hidden` : null}>
    <div class="grid">
      <div><label for="auth">Authentication</label>
        <select id="auth" name="auth" data-reveal="password-field" data-when="password">
          <option value="password"${f.auth === 'password' ? html` selected` : null}>Username and password</option>
          <option value="none"${f.auth === 'none' ? html` selected` : null}>None</option>
        </select></div>
      <div><label for="host">Host</label><input type="text" id="host" name="host" value="${f.host}" placeholder="smtp.example.com" spellcheck="false"></div>
      <div><label for="port">Port</label><input type="number" id="port" name="port" value="${f.port}" min="1" max="65535"></div>
      <div><label for="security">Security</label>
        <select id="security" name="security">
          ${(Object.keys(securityLabels) as Security[]).map((k) => html`<option value="${k}"${f.security === k ? html` selected` : null}>${securityLabels[k]}</option>`)}
        </select></div>
    </div>
  </div>

  <div class="grid">
    <div><label for="username">Username</label><input type="text" id="username" name="username" value="${f.username}" autocomplete="off" spellcheck="false" placeholder="notifications@example.com">
      <p class="help">For Outlook, the Microsoft 365 mailbox address.</p></div>
    <div id="password-field"${!f.outlook && f.auth === 'password' ? null : html` hidden`}><label for="password">Password</label>
      <input type="password" id="password" name="password" value="" autocomplete="new-password" placeholder="${s?.hasPassword ? 'Leave empty to keep the stored password' : ''}">
      ${s?.hasPassword ? html`<p class="help"><span class="tag tag-green">a password is stored</span> Leave the field empty to keep it.</p>` : null}</div>
  </div>
  <label for="fromFilter">From Filter</label>
  <input type="text" id="fromFilter" name="fromFilter" value="${f.fromFilter}" spellcheck="false" placeholder="notifications@example.com, example.com">
  <p class="help">${isUser
    ? html`Your personal server sends only your own mail: enter your address, ${ctx.user?.email ?? ''}.`
    : html`Addresses or domains, comma-separated, this server sends for. Empty: any sender. Left empty on an Outlook server, it becomes the mailbox.`}</p>
  <label class="check"><input type="checkbox" name="active" value="on"${f.active ? html` checked` : null}><span>Active<small>Inactive servers are never used to send.</small></span></label>
  <label class="check"><input type="checkbox" name="allowSelfSigned" value="on"${f.allowSelfSigned ? html` checked` : null}>
    <span>Allow self-signed certificates<small>Only for test and private servers: the server's TLS certificate is not verified.</small></span></label>
  <div class="grid">
    <div><label for="poolSize">Connections</label><input type="number" id="poolSize" name="poolSize" value="${f.poolSize}" min="1" max="50" placeholder="${s ? String(s.effectivePoolSize) : 'default'}">
      <p class="help">Kept open to the server. Empty: 2 for Outlook, 5 for others.</p></div>
    <div><label for="ratePerMinute">Mails per minute</label><input type="number" id="ratePerMinute" name="ratePerMinute" value="${f.ratePerMinute}" min="0" max="100000" placeholder="${s ? (s.effectiveRatePerMinute ? String(s.effectiveRatePerMinute) : 'no limit') : 'default'}">
      <p class="help">Mails beyond it wait their turn instead of failing. Empty: 30 for Outlook (Microsoft's limit per mailbox), no limit for others; 0: no limit.</p></div>
  </div>
  <div class="actions form-actions"><button type="submit">Save</button><a class="button secondary" href="/outgoing-servers">Cancel</a></div>
</form>
${s ? lastTest(s) : null}
${s
  ? html`<form id="test-form" method="post" action="/outgoing-servers/${s.id}/test">${csrfField(ctx)}</form>
<form id="connect-form" method="post" action="/outgoing-servers/${s.id}/outlook/connect">${csrfField(ctx)}</form>
<form id="archive-form" method="post" action="/outgoing-servers/${s.id}/archive">${csrfField(ctx)}</form>`
  : null}`;
}

function lastTest(s: OutgoingServerView): SafeHtml | null {
  if (!s.lastTest) return null;
  return html`<p class="muted">Last connection test ${s.lastTest.at.slice(0, 16).replace('T', ' ')} UTC: ${s.lastTest.ok ? 'succeeded' : 'failed'}.</p>`;
}

/** Test Connection's answer as the form shows it. */
export function testResultFlash(ok: boolean, message: string): Flash {
  return ok ? { kind: 'success', text: `Connection Test Successful! ${message}` } : { kind: 'error', text: `Connection Test Failed. ${message}` };
}
