// The incoming server form as the Outlook procedure uses it ("Configure incoming email server"): the
// "Outlook Oauth Authentication" checkbox, the Microsoft Outlook username, "Connect your Outlook account",
// the token tag, "Test and Confirm", then Fetch Now. Rendering and the form ↔ service mapping only; the
// routes are in incoming-servers-page.ts.
import type { IncomingServer } from '../db/schema.js';
import type { FetchCounts } from '../incoming/fetcher.js';
import { OUTLOOK_IMAP_PRESET, createIncomingServerSchema, patchIncomingServerSchema, type CreateIncomingServer, type PatchIncomingServer } from '../incoming/server-rules.js';
import type { IncomingServerView } from '../incoming/servers.js';
import type { TestConfirmResult } from '../incoming/test-confirm.js';
import { parseInput } from '../lib/validate.js';
import type { SettingsView } from '../settings/settings.js';
import { checked, csrfField, flashHtml, text, type Flash, type Form } from './forms.js';
import { html, type SafeHtml } from './html.js';
import type { PageContext } from './layout.js';
import { connectAddressWarning, connectButton, connectionFields, connectionOfCreate, connectionOfPatch, credentialsWarning, numberOrUndefined, outlookStatus, passwordInput, when, type Security } from './server-form.js';

export { when };

/** What the form shows: the stored server, or what was entered when a save was refused (never a password). */
export interface IncomingForm {
  name: string;
  outlook: boolean;
  host: string;
  port: string;
  security: string;
  username: string;
  folder: string;
  keepOriginal: boolean;
  keepAttachments: boolean;
  intervalMinutes: string;
  priority: string;
  active: boolean;
  allowSelfSigned: boolean;
}

export function newIncomingForm(username = ''): IncomingForm {
  return {
    name: '',
    outlook: false,
    host: '',
    port: '993',
    security: 'ssl',
    username,
    folder: 'INBOX',
    keepOriginal: false,
    keepAttachments: true,
    intervalMinutes: '5',
    priority: '10',
    active: true,
    allowSelfSigned: false,
  };
}

export function formOfServer(s: IncomingServer): IncomingForm {
  return {
    name: s.name,
    outlook: s.auth === 'outlook',
    host: s.host,
    port: String(s.port),
    security: s.security,
    username: s.username ?? '',
    folder: s.folder,
    keepOriginal: s.keep_original === 1,
    keepAttachments: s.keep_attachments === 1,
    intervalMinutes: String(s.interval_minutes),
    priority: String(s.priority),
    active: s.active === 1,
    allowSelfSigned: s.allow_self_signed === 1,
  };
}

export function formOfPost(body: Form): IncomingForm {
  return {
    name: text(body, 'name').trim(),
    outlook: checked(body, 'outlook'),
    host: text(body, 'host').trim(),
    port: text(body, 'port').trim(),
    security: text(body, 'security'),
    username: text(body, 'username').trim(),
    folder: text(body, 'folder').trim(),
    keepOriginal: checked(body, 'keepOriginal'),
    keepAttachments: checked(body, 'keepAttachments'),
    intervalMinutes: text(body, 'intervalMinutes').trim(),
    priority: text(body, 'priority').trim(),
    active: checked(body, 'active'),
    allowSelfSigned: checked(body, 'allowSelfSigned'),
  };
}

function common(f: IncomingForm) {
  return {
    name: f.name,
    auth: f.outlook ? ('outlook' as const) : ('password' as const),
    username: f.username || null,
    folder: f.folder || undefined,
    keepOriginal: f.keepOriginal,
    keepAttachments: f.keepAttachments,
    intervalMinutes: numberOrUndefined(f.intervalMinutes),
    priority: numberOrUndefined(f.priority),
    active: f.active,
    allowSelfSigned: f.allowSelfSigned,
  };
}

/** A new server from the form; Outlook servers take the outlook.office365.com:993 SSL preset (the service's default). */
export function toCreate(f: IncomingForm, body: Form): CreateIncomingServer {
  const password = text(body, 'password');
  return parseInput(
    createIncomingServerSchema,
    {
      ...common(f),
      ...connectionOfCreate(f),
      ...(!f.outlook && password !== '' ? { password } : {}),
    },
    'server',
  );
}

/** Changes from the form; an empty password field keeps the stored password. */
export function toPatch(f: IncomingForm, body: Form, current: IncomingServer): PatchIncomingServer {
  const password = text(body, 'password');
  const connection = connectionOfPatch(f, current, OUTLOOK_IMAP_PRESET);
  return parseInput(patchIncomingServerSchema, { ...common(f), ...connection, ...(!f.outlook && password !== '' ? { password } : {}) }, 'server');
}

export function stateTag(s: Pick<IncomingServerView, 'state'>): SafeHtml {
  return s.state === 'confirmed' ? html`<span class="tag tag-green">Confirmed</span>` : html`<span class="tag tag-amber">Draft</span>`;
}

/** Test and Confirm's answer as the form shows it; the server's own words when the message does not quote them. */
export function testConfirmFlash(r: TestConfirmResult): Flash {
  if (r.ok) return { kind: 'success', text: `Server confirmed: ${r.message}` };
  const reply = r.serverReply && !r.message.includes(r.serverReply) ? ` The server replied: ${r.serverReply}` : '';
  return { kind: 'error', text: `Test and Confirm failed: ${r.message}${reply}` };
}

export function fetchFlash(c: FetchCounts): Flash {
  const n = (k: number, one: string, many = `${one}s`) => `${k} ${k === 1 ? one : many}`;
  return {
    kind: c.quarantined > 0 ? 'warning' : 'success',
    text: `Fetched ${n(c.fetched, 'message')}: ${c.stored} stored, ${n(c.duplicates, 'duplicate')}, ${c.quarantined} quarantined.`,
  };
}

const securityLabels: Record<Security, string> = { ssl: 'SSL/TLS (port 993)', starttls: 'STARTTLS (port 143)', none: 'None (port 143, unencrypted)' };

export interface IncomingPage {
  ctx: PageContext;
  /** Undefined for a new server. */
  server?: IncomingServerView;
  form: IncomingForm;
  settings: SettingsView;
  error?: string;
  /** The field the error names: the password's and the port's are shown beside their inputs. */
  errorField?: string | undefined;
  result?: Flash;
  /** This page at web.base.url when reached at another host (server-pages.ts): Connect works only there. */
  connectElsewhere?: string | null | undefined;
  /** A background job's progress bar (src/jobs/progress-html.ts). */
  progress?: SafeHtml | undefined;
}

/** State, last test, last fetch and the failure run, so the person sees whether mail is arriving. */
function statusCard(s: IncomingServerView): SafeHtml {
  return html`<div class="card" id="fetch-status">
  <h2>Status</h2>
  <dl class="facts">
    <dt>State</dt><dd>${stateTag(s)} ${s.state === 'confirmed'
      ? html`<span class="muted">fetched every ${s.intervalMinutes} minute${s.intervalMinutes === 1 ? '' : 's'}${s.active ? '' : ' once active'}</span>`
      : html`<span class="muted">click Test and Confirm to start fetching</span>`}</dd>
    <dt>Last test</dt><dd>${s.lastTest ? html`${when(s.lastTest.at)}: ${s.lastTest.ok ? 'succeeded' : html`<span class="error-text">failed</span>`}` : html`<span class="muted">never</span>`}</dd>
    <dt>Last fetch</dt><dd>${s.lastFetchAt ? when(s.lastFetchAt) : html`<span class="muted">never</span>`}</dd>
    ${s.lastError
      ? html`<dt>Last error</dt><dd><span class="error-text">${s.lastError}</span>${s.errorSince ? html`<span class="help">Failing since ${when(s.errorSince)}.</span>` : null}</dd>`
      : null}
  </dl>
  ${s.state === 'confirmed' ? html`<p><a href="/inbox?serverId=${s.id}">Messages from this server</a></p>` : null}
</div>`;
}

export function incomingFormBody(p: IncomingPage): SafeHtml {
  const { ctx, server: s, form: f } = p;
  const action = s ? `/incoming-servers/${s.id}` : '/incoming-servers/new';
  const passwordError = p.errorField === 'password' && !f.outlook ? p.error : undefined;
  const portError = p.errorField === 'port' ? p.error : undefined;
  return html`<p class="muted"><a href="/incoming-servers">Incoming Mail Servers</a> /</p>
<div class="page-head">
  <h1>${s ? s.name : 'New Incoming Mail Server'} ${s ? stateTag(s) : null} ${s?.archived ? html`<span class="tag tag-grey">Archived</span>` : null}</h1>
  ${s
    ? html`<div class="actions">
    <button type="submit" form="test-form" class="secondary">Test and Confirm</button>
    ${s.state === 'confirmed' && !s.archived ? html`<button type="submit" form="fetch-form" class="secondary">Fetch Now</button>` : null}
    ${s.archived
      ? html`<button type="submit" form="unarchive-form" class="secondary">Restore</button>`
      : html`<button type="submit" form="archive-form" class="danger" data-confirm="Archive ${s.name}? It stops fetching at once; you can restore it from the archived servers.">Archive</button>`}
  </div>`
    : null}
</div>
${p.error && !passwordError && !portError ? flashHtml({ kind: 'error', text: p.error }) : null}
${flashHtml(p.result)}${p.progress ?? ''}
<form method="post" action="${action}" class="card" id="server-form">
  ${csrfField(ctx)}
  <div class="grid">
    <div><label for="name">Name</label><input type="text" id="name" name="name" value="${f.name}" required placeholder="Orders mailbox"></div>
    <div><label for="priority">Priority</label><input type="number" id="priority" name="priority" value="${f.priority}" min="0" max="10000">
      <p class="help">Lower is fetched first when several servers are due.</p></div>
  </div>
  <label class="check"><input type="checkbox" id="outlook" name="outlook" value="on"${f.outlook ? html` checked` : null} data-reveal="outlook-fields" data-conceal="password-field" data-advanced="connection-fields">
    <span>Outlook Oauth Authentication<small>Microsoft 365 or Outlook.com, signing in with OAuth instead of a password (${OUTLOOK_IMAP_PRESET.host}:${OUTLOOK_IMAP_PRESET.port}, SSL/TLS).</small></span></label>

  <div id="outlook-fields"${f.outlook ? null : html` hidden`}>
    ${credentialsWarning(ctx, p.settings)}
    ${connectAddressWarning(p.connectElsewhere)}
    ${s && s.auth === 'outlook'
      ? html`${outlookStatus(s, 'fine for a shared mailbox the account has Full Access to.')}<p class="help">Reads ${s.host}:${s.port} (${s.security.toUpperCase()}).</p>`
      : html`<div class="actions">${connectButton()}</div><p class="help">Connect your Outlook account saves the server first, then opens Microsoft's sign-in.</p>`}
  </div>
  ${connectionFields(f, OUTLOOK_IMAP_PRESET, securityLabels, 'imap.example.com', portError)}

  <div class="grid">
    <div><label for="username">Username</label><input type="text" id="username" name="username" value="${f.username}" autocomplete="off" spellcheck="false" placeholder="orders@example.com">
      <p class="help">For Outlook, the Microsoft Outlook username: the mailbox's email address.</p></div>
    <div id="password-field"${f.outlook ? html` hidden` : null}><label for="password">Password</label>
      ${passwordInput(!!s?.hasPassword, passwordError)}</div>
  </div>
  <div class="grid">
    <div><label for="folder">Folder</label><input type="text" id="folder" name="folder" value="${f.folder}" spellcheck="false" placeholder="INBOX">
      <p class="help">The IMAP folder to fetch, such as INBOX or INBOX/Orders.</p></div>
    <div><label for="intervalMinutes">Fetch every (minutes)</label><input type="number" id="intervalMinutes" name="intervalMinutes" value="${f.intervalMinutes}" min="1" max="1440"></div>
  </div>
  <label class="check"><input type="checkbox" name="keepOriginal" value="on"${f.keepOriginal ? html` checked` : null}>
    <span>Keep original<small>Store each message's original .eml as well (downloadable from the message).</small></span></label>
  <label class="check"><input type="checkbox" name="keepAttachments" value="on"${f.keepAttachments ? html` checked` : null}>
    <span>Keep attachments<small>Without it, attachments are listed by name and size only.</small></span></label>
  <label class="check"><input type="checkbox" name="active" value="on"${f.active ? html` checked` : null}><span>Active<small>Inactive servers are never fetched on their own.</small></span></label>
  <label class="check"><input type="checkbox" name="allowSelfSigned" value="on"${f.allowSelfSigned ? html` checked` : null}>
    <span>Allow self-signed certificates<small>Only for test and private servers: the server's TLS certificate is not verified.</small></span></label>
  <p class="help">Changing how Juniper connects (host, port, security, username, password, folder) makes the server a draft again until the next Test and Confirm.</p>
  <div class="actions form-actions"><button type="submit">Save</button><a class="button secondary" href="/incoming-servers">Cancel</a></div>
</form>
${s ? statusCard(s) : null}
${s
  ? html`<form id="test-form" method="post" action="/incoming-servers/${s.id}/test">${csrfField(ctx)}</form>
<form id="fetch-form" method="post" action="/incoming-servers/${s.id}/fetch">${csrfField(ctx)}</form>
<form id="archive-form" method="post" action="/incoming-servers/${s.id}/archive">${csrfField(ctx)}</form>
<form id="unarchive-form" method="post" action="/incoming-servers/${s.id}/unarchive">${csrfField(ctx)}</form>`
  : null}`;
}
