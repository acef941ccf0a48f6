// What the outgoing and the incoming server forms share, as the Odoo mixin shares one OAuth piece between
// them: the Outlook checkbox's token tag and "Connect your Outlook account" (a button of the server form
// itself, so the edits are saved before the browser leaves for Microsoft), the Outlook Credentials warning,
// and the host / port / security fields, which an Outlook server keeps at Microsoft's defaults under an
// "Advanced" part an admin can open to change them.
import type { SettingsView } from '../settings/settings.js';
import type { TokenView } from '../outgoing/servers.js';
import { html, type SafeHtml } from './html.js';
import type { PageContext } from './layout.js';

export type Security = 'none' | 'starttls' | 'ssl';

export interface Endpoint {
  host: string;
  port: number;
  security: Security;
}

/** The connection fields as entered (strings, as a form posts them). */
export interface ConnectionForm {
  outlook: boolean;
  host: string;
  port: string;
  security: string;
}

export const numberOrUndefined = (v: string): number | undefined => (v === '' ? undefined : Number(v));
/** An empty field means the default for the server's kind (stored as null). */
export const numberOrNull = (v: string): number | null => (v === '' ? null : Number(v));
export const when = (iso: string): string => `${iso.slice(0, 16).replace('T', ' ')} UTC`;

export function tokenTag(token: TokenView): SafeHtml {
  // Green only while the token works: an app-wide problem (expired client secret …) stops every server.
  if (token.appProblem) return html`<span class="tag tag-red">Outlook app credentials need attention</span>`;
  if (token.status === 'valid') return html`<span class="tag tag-green">Outlook Token Valid</span>`;
  if (token.status === 'needs_reconnect') return html`<span class="tag tag-red">Outlook Token: reconnect needed</span>`;
  return html`<span class="tag tag-grey">Outlook Token Missing</span>`;
}

/**
 * Why a token needs reconnecting, saying the code and what to do once each: the stored message is usually
 * Juniper's explanation already, ending "(Microsoft: invalid_grant, AADSTS9002313)" after its own action.
 */
export function reconnectNote(error: { code: string | null; message: string }): string {
  const m = error.message.trim();
  const code = error.code && !m.includes(error.code) ? ` (${error.code})` : '';
  const action = /connect your outlook account|connect again/i.test(m) ? '' : ' Click Connect your Outlook account to sign in again.';
  return `${m}${code}${action}`;
}

/**
 * What stops an Outlook server before any test could pass, for the lists' status column: a problem of the
 * app (every server) or of this server's token ranks above an older "Test passed". Null: nothing known.
 */
export function tokenBlocker(s: { auth: string; token: TokenView }): string | null {
  if (s.auth !== 'outlook') return null;
  if (s.token.appProblem) return 'Outlook app credentials need attention';
  if (s.token.status === 'needs_reconnect') return 'Reconnect needed';
  if (s.token.status === 'missing') return 'Not connected yet';
  return null;
}

/**
 * The Connect button submits the server form itself (name="connect"): the route saves what was typed, then
 * sends the browser to Microsoft, so no edit is lost on the way (and a new server is created first).
 */
export function connectButton(): SafeHtml {
  return html`<button type="submit" name="connect" value="1" class="secondary">Connect your Outlook account</button>`;
}

/** The token tag, Connect, and what the token says, for a stored Outlook server. */
export function outlookStatus(s: { username: string | null; token: TokenView }, mismatchNote: string): SafeHtml {
  const t = s.token;
  const mismatch = t.account && s.username && t.account.toLowerCase() !== s.username.toLowerCase();
  return html`<div class="actions">${tokenTag(t)} ${connectButton()}</div>
  ${t.status === 'needs_reconnect' && t.error ? html`<p class="flash flash-error">${reconnectNote(t.error)}</p>` : null}
  ${t.status === 'missing' ? html`<p class="help">Click Connect your Outlook account and sign in to Microsoft as ${s.username ?? 'the mailbox'}.</p>` : null}
  ${t.account && !mismatch ? html`<p class="help">Connected as <strong>${t.account}</strong>.</p>` : null}
  ${mismatch ? html`<p class="flash flash-warning">Connected as ${t.account}; this server's username is ${s.username} — ${mismatchNote}</p>` : null}`;
}

/**
 * Beside Connect, when this page was reached at another host than web.base.url's: Microsoft sends the browser
 * back to web.base.url, where the session cookie of this host does not go, so the sign-in could not be finished.
 */
export function connectAddressWarning(there: string | null | undefined): SafeHtml | null {
  if (!there) return null;
  return html`<p class="flash flash-warning" id="connect-address">Open this page at <a href="${there}">${there}</a> to connect: Microsoft sends you back to ${new URL(there).origin} (the system parameter web.base.url), and a sign-in at this address does not count there. Connect your Outlook account here saves what you typed and stops before Microsoft.</p>`;
}

export function credentialsWarning(ctx: PageContext, settings: SettingsView): SafeHtml | null {
  const o = settings.outlook;
  if (o.clientId && o.hasClientSecret && settings.customEmailServers) return null;
  const where = ctx.user?.role === 'admin' ? html`<a href="/settings">General Settings</a>` : html`General Settings (ask an admin)`;
  return html`<p class="flash flash-warning">Outlook needs the Outlook Credentials (Client ID and Client Secret) in ${where} before an account can be connected.</p>`;
}

/**
 * Host, port and security. Open for a password server; for an Outlook server a closed "Advanced" part
 * holding Microsoft's defaults (app.js fills them in when Outlook is ticked), so they can still be changed.
 * A refusal naming the port (a port a user's server may not use) is shown beside it, the part opened.
 */
export function connectionFields(f: ConnectionForm, preset: Endpoint, labels: Record<Security, string>, hostPlaceholder: string, portError?: string): SafeHtml {
  const port = portError
    ? html`<input type="number" id="port" name="port" value="${f.port}" min="1" max="65535" aria-invalid="true" aria-describedby="port-error" autofocus>
        <p class="help error-text" id="port-error" role="alert">${portError}</p>`
    : html`<input type="number" id="port" name="port" value="${f.port}" min="1" max="65535">`;
  return html`<details id="connection-fields" class="advanced"${f.outlook && !portError ? null : html` open`} data-preset-host="${preset.host}" data-preset-port="${preset.port}" data-preset-security="${preset.security}">
    <summary${f.outlook ? null : html` hidden`}>Advanced: host, port and security <small>(Microsoft's defaults: ${preset.host}:${preset.port}, ${labels[preset.security].replace(/ \(.*\)$/, '')})</small></summary>
    <div class="grid">
      <div><label for="host">Host</label><input type="text" id="host" name="host" value="${f.host}" placeholder="${hostPlaceholder}" spellcheck="false"></div>
      <div><label for="port">Port</label>${port}</div>
      <div><label for="security">Security</label>
        <select id="security" name="security">
          ${(Object.keys(labels) as Security[]).map((k) => html`<option value="${k}"${f.security === k ? html` selected` : null}>${labels[k]}</option>`)}
        </select></div>
    </div>
  </details>`;
}

/**
 * The password input. A refusal that names the password field (details.field, e.g. "Enter the password
 * again" after a change of host) is shown beside it instead of at the top of the form, and the field takes
 * the focus; the form never echoes a password, so the person types it again there.
 */
export function passwordInput(hasPassword: boolean, error: string | undefined): SafeHtml {
  if (error) {
    return html`<input type="password" id="password" name="password" value="" autocomplete="new-password" aria-invalid="true" aria-describedby="password-error" autofocus>
      <p class="help error-text" id="password-error" role="alert">${error}</p>`;
  }
  return html`<input type="password" id="password" name="password" value="" autocomplete="new-password" placeholder="${hasPassword ? 'Leave empty to keep the stored password' : ''}">
      ${hasPassword ? html`<p class="help"><span class="tag tag-green">a password is stored</span> Leave the field empty to keep it.</p>` : null}`;
}

/** The field a refused save names (AppError details.field), for the form to show the message beside it. */
export function errorFieldOf(details: Record<string, unknown> | undefined): string | undefined {
  return typeof details?.field === 'string' ? details.field : undefined;
}

/** The connection a new server asks for: empty fields take the service's default (Microsoft's for Outlook). */
export function connectionOfCreate(f: ConnectionForm): { host?: string; port?: number; security?: string } {
  return { host: f.host || undefined, port: numberOrUndefined(f.port), security: f.security || undefined };
}

/**
 * The connection an edit asks for. What is posted counts, Outlook or not (defect: edits made under Outlook
 * were dropped); only a server becoming Outlook with its old relay's fields untouched (no script filled in
 * the preset) takes Microsoft's defaults.
 */
export function connectionOfPatch(f: ConnectionForm, current: { auth: string; host: string; port: number; security: string }, preset: Endpoint): Endpoint | { host: string; port: number | undefined; security: string } {
  const untouched = f.host === current.host && f.port === String(current.port) && f.security === current.security;
  if (f.outlook && current.auth !== 'outlook' && untouched) return { ...preset };
  return { host: f.host, port: numberOrUndefined(f.port), security: f.security };
}
