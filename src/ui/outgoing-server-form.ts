// The outgoing server form as the Outlook procedure uses it: the "Outlook" checkbox, Name, Username,
// "From Filter", "Connect your Outlook account", the token tag and "Test Connection". Rendering and the
// form ↔ service mapping only; the routes are in outgoing-servers-page.ts.
import type { OutgoingServer } from '../db/schema.js';
import { parseInput } from '../lib/validate.js';
import {
  OUTLOOK_SMTP_PRESET,
  createOutgoingServerSchema,
  patchOutgoingServerSchema,
  transportSchema,
  type CreateOutgoingServer,
  type PatchOutgoingServer,
  type Transport,
} from '../outgoing/server-rules.js';
import { archiveRefusal } from '../outgoing/mass-mailing.js';
import { filterMatches, parseFromFilter } from '../outgoing/routing.js';
import type { OutgoingServerView } from '../outgoing/servers.js';
import type { SettingsView } from '../settings/settings.js';
import { sendAsWarning } from '../outgoing/connection-test.js';
import { checked, csrfField, flashHtml, text, type Flash, type Form } from './forms.js';
import { html, type SafeHtml } from './html.js';
import type { PageContext } from './layout.js';
import {
  connectButton,
  connectionFields,
  connectionOfCreate,
  connectionOfPatch,
  connectAddressWarning,
  credentialsWarning,
  numberOrNull,
  numberOrUndefined,
  outlookStatus,
  passwordInput,
  type Security,
} from './server-form.js';

export { tokenTag } from './server-form.js';

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
  /** Outlook only. */
  transport: Transport;
}

export function newServerForm(fromFilter = ''): ServerForm {
  return { name: '', outlook: false, auth: 'password', host: '', port: '587', security: 'starttls', username: '', fromFilter, priority: '10', active: true, allowSelfSigned: false, poolSize: '', ratePerMinute: '', transport: 'auto' };
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
    transport: s.auth === 'outlook' ? s.transport : 'auto',
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
    transport: transportSchema.catch('auto').parse(text(body, 'transport')),
  };
}

/** The Outlook-only fields: a server without Outlook sends by SMTP and has no Sent Items to keep. */
const graphFields = (f: ServerForm) => (f.outlook ? { transport: f.transport } : {});

/**
 * The transport of a change: only when it changed or "Try SMTP again" is ticked, since naming it in a patch
 * ends an automatic switch to Graph; renaming a switched server must not send it back into SMTP's refusals.
 */
const graphPatch = (f: ServerForm, body: Form, current: OutgoingServer) =>
  f.outlook && (f.transport !== current.transport || current.auth !== 'outlook' || checked(body, 'retrySmtp')) ? { transport: f.transport } : {};

/** A new server from the form; Outlook servers default to the smtp.office365.com:587 STARTTLS preset. */
export function toCreate(f: ServerForm, body: Form): CreateOutgoingServer {
  const password = text(body, 'password');
  return parseInput(
    createOutgoingServerSchema,
    {
      name: f.name,
      auth: f.outlook ? 'outlook' : f.auth,
      ...connectionOfCreate(f),
      username: f.username || null,
      ...(f.auth === 'password' && !f.outlook && password !== '' ? { password } : {}),
      // Named even when empty: the procedure lets a server's From Filter stay empty (the dedicated mass-mailing
      // server), so the form does not fill in the mailbox as the API does when the field is left out.
      fromFilter: f.fromFilter || null,
      priority: numberOrUndefined(f.priority),
      active: f.active,
      allowSelfSigned: f.allowSelfSigned,
      poolSize: numberOrNull(f.poolSize),
      ratePerMinute: numberOrNull(f.ratePerMinute),
      ...graphFields(f),
    },
    'server',
  );
}

/** Changes from the form; an empty password field keeps the stored password. */
export function toPatch(f: ServerForm, body: Form, current: OutgoingServer): PatchOutgoingServer {
  const password = text(body, 'password');
  return parseInput(
    patchOutgoingServerSchema,
    {
      name: f.name,
      auth: f.outlook ? 'outlook' : f.auth,
      ...connectionOfPatch(f, current, OUTLOOK_SMTP_PRESET),
      username: f.username || null,
      ...(f.auth === 'password' && !f.outlook && password !== '' ? { password } : {}),
      fromFilter: f.fromFilter || null,
      priority: numberOrUndefined(f.priority),
      active: f.active,
      allowSelfSigned: f.allowSelfSigned,
      poolSize: numberOrNull(f.poolSize),
      ratePerMinute: numberOrNull(f.ratePerMinute),
      ...graphPatch(f, body, current),
    },
    'server',
  );
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
  /** The notifications address ({mail.default.from}@{mail.catchall.domain}), when set. */
  defaultFrom?: string | null;
  error?: string;
  /** The field the error names: the password's and the port's are shown beside their inputs. */
  errorField?: string | undefined;
  result?: Flash;
  /** This page at web.base.url when reached at another host (server-pages.ts): Connect works only there. */
  connectElsewhere?: string | null | undefined;
}

/**
 * What a mass mailing's From becomes on the dedicated mass-mailing server (routing's rule: a From the filter
 * admits is kept, an empty filter admits all; any other is sent as the notifications address when the filter
 * admits that, else kept and the server may refuse it).
 */
export function massMailingFromNote(f: Pick<ServerForm, 'outlook' | 'username' | 'fromFilter'>, defaultFrom: string | null): string {
  const lead = 'This is the dedicated server for mass mailings (Settings → Email Marketing).';
  if (f.fromFilter.trim() === '') {
    const rights = f.outlook && f.username ? ` Microsoft sends them only if the mailbox ${f.username} holds Send As rights on those addresses.` : '';
    return `${lead} Its From Filter is empty, so a mass mailing keeps its own From: one from news@… is sent as news@….${rights}`;
  }
  const parts = parseFromFilter(f.fromFilter);
  const other =
    defaultFrom && filterMatches(parts, defaultFrom) !== null
      ? `any other is sent as the notifications address ${defaultFrom}, with Reply-To set to the original From`
      : 'any other keeps its From, and the server may refuse it';
  return `${lead} A mass mailing whose From the filter (${parts.join(', ')}) lists keeps it; ${other}.`;
}

function credentialsAndStatus(p: ServerPage): SafeHtml {
  const s = p.server;
  if (s && s.auth === 'outlook') {
    return html`${outlookStatus(s, 'fine for shared mailboxes or send-as rights.')}<p class="help">Sends through ${s.host}:${s.port} (${s.security.toUpperCase()}).</p>`;
  }
  return html`<div class="actions">${connectButton()}</div><p class="help">Connect your Outlook account saves the server first, then opens Microsoft's sign-in.</p>`;
}

const transportLabels: Record<Transport, string> = {
  auto: 'Automatic: SMTP, and Microsoft Graph once Microsoft turns SMTP AUTH off',
  smtp: 'SMTP only',
  graph: 'Microsoft Graph only',
};

/** How an Outlook server sends, and where an automatic one stands. */
function transportFields(p: ServerPage): SafeHtml {
  const { server: s, form: f } = p;
  const switched = s?.transportSwitch && s.transport === 'auto'
    ? html`<p class="flash flash-warning" id="transport-switch">Sending through Microsoft Graph since ${s.transportSwitch.at.slice(0, 16).replace('T', ' ')} UTC: ${s.transportSwitch.reason}</p>
      <label class="check"><input type="checkbox" name="retrySmtp" value="on"><span>Try SMTP again<small>When saving, send by SMTP again until Microsoft refuses SMTP AUTH once more.</small></span></label>`
    : null;
  return html`<label for="transport">Transport</label>
    <select id="transport" name="transport" aria-describedby="transport-help">
      ${(['auto', 'smtp', 'graph'] as const).map((t) => html`<option value="${t}"${f.transport === t ? html` selected` : null}>${transportLabels[t]}</option>`)}
    </select>
    <p class="help" id="transport-help">Graph sends the same message through the same Outlook connection, without SMTP AUTH; it needs the Mail.Send permission (connect again after changing from SMTP only).</p>
    ${switched}
    <p class="help" id="sent-items-help">Through Graph, Microsoft keeps a copy of each mail in the mailbox's Sent Items folder (it does for every message sent as MIME, as Juniper sends them); SMTP keeps none.</p>`;
}

export function serverFormBody(p: ServerPage): SafeHtml {
  const { ctx, server: s, form: f } = p;
  const action = s ? `/outgoing-servers/${s.id}` : '/outgoing-servers/new';
  const isUser = ctx.user?.role !== 'admin';
  const sendAs = f.outlook ? sendAsWarning({ auth: 'outlook', username: f.username || null, from_filter: f.fromFilter || null }) : null;
  const passwordError = p.errorField === 'password' && !f.outlook && f.auth === 'password' ? p.error : undefined;
  const portError = p.errorField === 'port' ? p.error : undefined;
  // The dedicated mass-mailing server is not archived (the service refuses it): its Archive says why and leads to Settings.
  const dedicated = !!s && p.settings.massMailing.dedicatedServer && p.settings.massMailing.serverId === s.id;
  const mass = dedicated ? massMailingFromNote(f, p.defaultFrom ?? null) : null;
  return html`<p class="muted"><a href="/outgoing-servers">Outgoing Email Servers</a> /</p>
<div class="page-head">
  <h1>${s ? s.name : 'New Outgoing Email Server'} ${s?.archived ? html`<span class="tag tag-grey">Archived</span>` : null}</h1>
  ${s
    ? html`<div class="actions">
    <button type="submit" form="test-form" class="secondary">Test Connection</button>
    ${s.archived ? null : html`<a class="button secondary" href="/compose?serverId=${s.id}">Send a test mail</a>`}
    ${s.archived
      ? html`<button type="submit" form="unarchive-form" class="secondary">Restore</button>`
      : dedicated
        ? html`<a class="button danger" href="/settings#mass-mailing" data-confirm="${archiveRefusal(s)} Open Settings → Email Marketing now?">Archive</a>`
        : html`<button type="submit" form="archive-form" class="danger" data-confirm="Archive ${s.name}? It stops sending at once; you can restore it from the archived servers.">Archive</button>`}
  </div>`
    : null}
</div>
${p.error && !passwordError && !portError ? flashHtml({ kind: 'error', text: p.error }) : null}
${flashHtml(p.result)}
<form method="post" action="${action}" class="card" id="server-form">
  ${csrfField(ctx)}
  <div class="grid">
    <div><label for="name">Name</label><input type="text" id="name" name="name" value="${f.name}" required placeholder="Microsoft 365 notifications"></div>
    <div><label for="priority">Priority</label><input type="number" id="priority" name="priority" value="${f.priority}" min="0" max="10000" aria-describedby="priority-help">
      <p class="help" id="priority-help">Lower is tried first when several servers match.</p></div>
  </div>
  <label class="check"><input type="checkbox" id="outlook" name="outlook" value="on"${f.outlook ? html` checked` : null} data-reveal="outlook-fields" data-conceal="auth-field" data-advanced="connection-fields">
    <span>Outlook<small>Microsoft 365 or Outlook.com, signing in with OAuth instead of a password (${OUTLOOK_SMTP_PRESET.host}:${OUTLOOK_SMTP_PRESET.port}, STARTTLS).</small></span></label>

  <div id="outlook-fields"${f.outlook ? null : html` hidden`}>
    ${credentialsWarning(ctx, p.settings)}
    ${connectAddressWarning(p.connectElsewhere)}
    ${credentialsAndStatus(p)}
    ${transportFields(p)}
  </div>

  <div id="auth-field"${f.outlook ? html` hidden` : null}>
    <label for="auth">Authentication</label>
    <select id="auth" name="auth" data-reveal="password-field" data-when="password">
      <option value="password"${f.auth === 'password' ? html` selected` : null}>Username and password</option>
      <option value="none"${f.auth === 'none' ? html` selected` : null}>None</option>
    </select>
  </div>
  ${connectionFields(f, OUTLOOK_SMTP_PRESET, securityLabels, 'smtp.example.com', portError)}

  <div class="grid">
    <div><label for="username">Username</label><input type="text" id="username" name="username" value="${f.username}" autocomplete="off" spellcheck="false" placeholder="notifications@example.com" aria-describedby="username-help">
      <p class="help" id="username-help">For Outlook, the Microsoft 365 mailbox address.</p></div>
    <div id="password-field"${!f.outlook && f.auth === 'password' ? null : html` hidden`}><label for="password">Password</label>
      ${passwordInput(!!s?.hasPassword, passwordError)}</div>
  </div>
  <label for="fromFilter">From Filter</label>
  <input type="text" id="fromFilter" name="fromFilter" value="${f.fromFilter}" spellcheck="false" placeholder="notifications@example.com, example.com" aria-describedby="fromFilter-help">
  <p class="help" id="fromFilter-help">${isUser
    ? html`Your personal server sends only your own mail: enter your address, ${ctx.user?.email ?? ''}.`
    : html`Addresses or domains, comma-separated, this server sends for. Empty: any sender (the procedure leaves it empty on a dedicated mass-mailing server).`}</p>
  ${sendAs ? html`<p class="flash flash-warning" id="send-as-warning">${sendAs}</p>` : null}
  ${mass ? html`<p class="flash flash-warning" id="mass-mailing-from">${mass}</p>` : null}
  <label class="check"><input type="checkbox" name="active" value="on"${f.active ? html` checked` : null}><span>Active<small>Inactive servers are never used to send.</small></span></label>
  <label class="check"><input type="checkbox" name="allowSelfSigned" value="on"${f.allowSelfSigned ? html` checked` : null}>
    <span>Allow self-signed certificates<small>Only for test and private servers: the server's TLS certificate is not verified.</small></span></label>
  <div class="grid">
    <div><label for="poolSize">Connections</label><input type="number" id="poolSize" name="poolSize" value="${f.poolSize}" min="1" max="50" placeholder="${s ? String(s.effectivePoolSize) : 'default'}" aria-describedby="poolSize-help">
      <p class="help" id="poolSize-help">Kept open to the server. Empty: 2 for Outlook, 5 for others.</p></div>
    <div><label for="ratePerMinute">Mails per minute</label><input type="number" id="ratePerMinute" name="ratePerMinute" value="${f.ratePerMinute}" min="0" max="100000" placeholder="${s ? (s.effectiveRatePerMinute ? String(s.effectiveRatePerMinute) : 'no limit') : 'default'}" aria-describedby="rate-help">
      <p class="help" id="rate-help">Mails beyond it wait their turn instead of failing. Empty: 30 for Outlook (Microsoft's limit per mailbox), no limit for others; 0: no limit.</p></div>
  </div>
  <div class="actions form-actions"><button type="submit">Save</button><a class="button secondary" href="/outgoing-servers">Cancel</a></div>
</form>
${s ? lastTest(s) : null}
${s
  ? html`<form id="test-form" method="post" action="/outgoing-servers/${s.id}/test">${csrfField(ctx)}</form>
<form id="archive-form" method="post" action="/outgoing-servers/${s.id}/archive">${csrfField(ctx)}</form>
<form id="unarchive-form" method="post" action="/outgoing-servers/${s.id}/unarchive">${csrfField(ctx)}</form>`
  : null}`;
}

function lastTest(s: OutgoingServerView): SafeHtml | null {
  if (!s.lastTest) return null;
  return html`<p class="muted">Last connection test ${s.lastTest.at.slice(0, 16).replace('T', ' ')} UTC: ${s.lastTest.ok ? 'succeeded' : 'failed'}.</p>`;
}

/** Test Connection's answer as the form shows it (the message already says what succeeded or failed). */
export function testResultFlash(ok: boolean, message: string, warnings: string[] = []): Flash {
  const extra = warnings.length ? ` Warning: ${warnings.join(' ')}` : '';
  if (ok) return { kind: warnings.length ? 'warning' : 'success', text: `Connection Test Successful! ${message.replace(/^Connection test succeeded: /, '')}${extra}` };
  return { kind: 'error', text: `Connection Test Failed. ${message}${extra}` };
}
