// General Settings: the "Custom Email Servers" checkbox that reveals "Outlook Credentials" (client id, the
// write-only client secret and its expiry, cloud, tenant, and the Redirect URI to register in Azure), then
// the link to the Outgoing Email Servers, as the Outlook procedure walks through them.
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { microsoft } from '../oauth/microsoft.js';
import type { Services } from '../services.js';
import { actorOf } from '../http/actor.js';
import type { Cloud, SettingsPatch, SettingsView } from '../settings/settings.js';
import type { OutgoingServer } from '../db/schema.js';
import { dedicatedServerProblem } from '../outgoing/mass-mailing.js';
import { checked, csrfField, flashHtml, formError, pageContext, redirectWithFlash, renderPage, text, type Flash, type Form } from './forms.js';
import { html, type SafeHtml } from './html.js';
import type { PageContext } from './layout.js';
import { appProblemNotice, type AffectedServer } from './outlook-app-notice.js';
import type { AppProblem } from '../oauth/app-status.js';
import type { CredentialsCheck } from '../oauth/credentials-check.js';

const REDIRECT_PATH = microsoft.redirectPath;

const cloudLabels: Record<Cloud, string> = {
  global: 'Global',
  usgov: 'US Government (GCC High, DoD)',
  china: 'China (21Vianet)',
};

/** What the form shows: the stored view, or what was entered when a save was refused (never the secret). */
interface SettingsForm {
  customEmailServers: boolean;
  clientId: string;
  clientSecretExpiresAt: string;
  cloud: string;
  tenant: string;
  dedicatedServer: boolean;
  massMailingServerId: string;
}

function fromView(v: SettingsView): SettingsForm {
  return {
    customEmailServers: v.customEmailServers,
    clientId: v.outlook.clientId ?? '',
    clientSecretExpiresAt: v.outlook.clientSecretExpiresAt ?? '',
    cloud: v.outlook.cloud,
    tenant: v.outlook.tenant,
    dedicatedServer: v.massMailing.dedicatedServer,
    massMailingServerId: v.massMailing.serverId === null ? '' : String(v.massMailing.serverId),
  };
}

function fromPost(body: Form): SettingsForm {
  return {
    customEmailServers: checked(body, 'customEmailServers'),
    clientId: text(body, 'clientId').trim(),
    clientSecretExpiresAt: text(body, 'clientSecretExpiresAt').trim(),
    cloud: text(body, 'cloud'),
    tenant: text(body, 'tenant').trim(),
    dedicatedServer: checked(body, 'dedicatedServer'),
    massMailingServerId: text(body, 'massMailingServerId'),
  };
}

function toPatch(f: SettingsForm, body: Form): SettingsPatch {
  const secret = text(body, 'clientSecret').trim();
  // Microsoft Outlook is installed in Apps, not here; and a form sent without the credential fields (an old
  // tab, a script) leaves the stored ones alone instead of clearing them.
  if (body.clientId === undefined) return { customEmailServers: f.customEmailServers, massMailing: massMailingOf(f) };
  return {
    customEmailServers: f.customEmailServers,
    outlook: {
      clientId: f.clientId,
      // An empty secret field keeps the stored secret: the page never shows it, so it cannot send it back.
      ...(secret !== '' ? { clientSecret: secret } : checked(body, 'clearClientSecret') ? { clientSecret: '' } : {}),
      clientSecretExpiresAt: f.clientSecretExpiresAt,
      // The service validates the cloud name; an unknown one is reported, not silently replaced.
      cloud: f.cloud as Cloud,
      tenant: f.tenant === '' ? 'common' : f.tenant,
    },
    massMailing: massMailingOf(f),
  };
}

function massMailingOf(f: SettingsForm): SettingsPatch['massMailing'] {
  return { dedicatedServer: f.dedicatedServer, serverId: f.massMailingServerId === '' ? null : Number(f.massMailingServerId) };
}

/** Days left on the client secret, louder as expiry nears (Azure secrets expire; mail stops when they do). */
function expiryNote(daysLeft: number | null): SafeHtml | null {
  if (daysLeft === null) return html`<p class="help">Note the expiry date Azure showed for the secret: Juniper warns 30, 14, 7 and 1 days before it.</p>`;
  if (daysLeft < 0) return html`<p class="flash flash-error">The client secret expired ${-daysLeft} day${-daysLeft === 1 ? '' : 's'} ago: Outlook servers cannot refresh their tokens. Create a new secret in Azure (Certificates &amp; secrets) and paste its Value above.</p>`;
  const when = daysLeft === 0 ? 'today' : `in ${daysLeft} day${daysLeft === 1 ? '' : 's'}`;
  if (daysLeft <= 30) {
    const kind = daysLeft <= 7 ? 'error' : 'warning';
    return html`<p class="flash flash-${kind}">The client secret expires ${when}. Create a new one in Azure (Certificates &amp; secrets) before then and paste its Value above, or Outlook mail stops.</p>`;
  }
  return html`<p class="help">Expires ${when}.</p>`;
}

/**
 * The Redirect URI is always shown: the stored web.base.url's, or (unset) the address this browser used,
 * with a warning when it is not https or not the address the page was reached at, since Azure must hold it
 * character for character and Microsoft sends the browser back only there.
 */
function redirectUriBlock(view: SettingsView, origin: string): SafeHtml {
  const stored = view.outlook.redirectUri;
  const uri = stored ?? `${origin}${REDIRECT_PATH}`;
  const warnings: SafeHtml[] = [];
  if (stored === null) {
    warnings.push(html`Juniper's public address (the system parameter <code>web.base.url</code>) is not set, so this is the address you reached this page at. Set
<code>web.base.url</code> to the address people use (e.g. <code>https://juniper.example.com</code>) in <a href="/parameters?debug=1">System Parameters</a>
(developer mode), with <code>juniper params set web.base.url https://…</code> or by starting Juniper with <code>JUNIPER_BASE_URL</code>; until then Connect your Outlook account refuses to start.`);
  } else if (!stored.startsWith(`${origin}/`)) {
    warnings.push(html`This page was reached at <code>${origin}</code>, not at <code>web.base.url</code>: Microsoft will send the browser back to <code>${stored}</code>. If people use ${origin}, set web.base.url to it.`);
  }
  const loopback = /^http:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d+)?\//.test(uri);
  if (!uri.startsWith('https://') && !loopback) {
    warnings.push(html`The address is not https: Microsoft accepts an http Redirect URI only for localhost. Serve Juniper over https (for example behind a TLS reverse proxy) and set web.base.url to the https address.`);
  }
  return html`<div class="copyable"><code id="redirect-uri">${uri}</code><button type="button" class="secondary small" data-copy="redirect-uri" hidden>Copy</button></div>
<p class="help">Register exactly this address in Azure: App registration → Authentication → Web → Redirect URIs.</p>
${warnings.map((w) => html`<p class="flash flash-warning">${w}</p>`)}`;
}

/** Settings errors name the fields as the page does, not the service's keys. */
function pageWording(message: string): string {
  return message
    .replace(/\boutlook\.clientId\b/g, 'Client ID')
    .replace(/\boutlook\.clientSecretExpiresAt\b/g, 'Client secret expiry date')
    .replace(/\boutlook\.clientSecret\b/g, 'Client Secret')
    .replace(/\boutlook\.tenant\b/g, 'Tenant')
    .replace(/\boutlook\.cloud\b/g, 'Microsoft cloud')
    .replace(/\bmassMailing\.serverId\b/g, 'Mass mailing server');
}

/**
 * The mass-mailing server choice. The stored server is always among the options, archived or gone too (named as
 * such, with the reason mass mailings wait): a form that left it out would send "no server" back, and every
 * later Save, of the client secret say, would then be refused.
 */
function massMailingServerField(view: SettingsView, f: SettingsForm, servers: OutgoingServer[], error?: string): SafeHtml {
  const stored = view.massMailing.serverId;
  const storedRow = servers.find((s) => s.id === stored);
  const choices = servers.filter((s) => (s.owner_user_id === null && s.archived_at === null) || s.id === stored);
  const label = (s: OutgoingServer) => `${s.name}${s.archived_at !== null ? ' (archived)' : s.active !== 1 ? ' (inactive)' : ''}`;
  const facts = storedRow && { id: storedRow.id, name: storedRow.name, active: storedRow.active === 1, archived: storedRow.archived_at !== null };
  const problem = view.massMailing.dedicatedServer && stored !== null ? dedicatedServerProblem(stored, facts) : null;
  const fieldError = error?.startsWith('Invalid settings: Mass mailing server: ') ? error.slice('Invalid settings: Mass mailing server: '.length) : null;
  const described = [problem ? 'mass-mailing-warning' : null, fieldError ? 'massMailingServerId-error' : null].filter((x) => x !== null).join(' ');
  return html`<label for="massMailingServerId">Mass mailing server</label>
    <select id="massMailingServerId" name="massMailingServerId"${fieldError ? html` aria-invalid="true"` : null}${described ? html` aria-describedby="${described}"` : null}>
      <option value="">Choose a server…</option>
      ${choices.map((s) => html`<option value="${s.id}"${String(s.id) === f.massMailingServerId ? html` selected` : null}>${label(s)}</option>`)}
      ${stored !== null && !storedRow ? html`<option value="${stored}"${String(stored) === f.massMailingServerId ? html` selected` : null}>id ${stored} (no such server)</option>` : null}
    </select>
    ${fieldError ? html`<p class="help error-text" id="massMailingServerId-error" role="alert">${fieldError}</p>` : null}
    ${problem ? html`<p class="flash flash-warning" id="mass-mailing-warning">${problem}</p>` : null}`;
}

/** The app problem Microsoft reported, and the Outlook servers it stops (shown beside Outlook Credentials). */
interface AppProblemFacts {
  problem: AppProblem | null;
  affected: AffectedServer[];
}

async function appProblemFacts(services: Pick<Services, 'oauthAppStatus' | 'incomingServers'>, outgoing: OutgoingServer[]): Promise<AppProblemFacts> {
  const problem = await services.oauthAppStatus.get();
  if (!problem) return { problem, affected: [] };
  const outlook = <S extends { auth: string; archived_at: number | null }>(s: S) => s.auth === 'outlook' && s.archived_at === null;
  const incoming = await services.incomingServers.list();
  return {
    problem,
    affected: [...outgoing.filter(outlook).map((s) => ({ kind: 'outgoing' as const, id: s.id, name: s.name })), ...incoming.filter(outlook).map((s) => ({ kind: 'incoming' as const, id: s.id, name: s.name }))],
  };
}

function settingsBody(ctx: PageContext, view: SettingsView, f: SettingsForm, servers: OutgoingServer[], origin: string, app: AppProblemFacts, error?: string): SafeHtml {
  const o = view.outlook;
  return html`<div class="page-head"><h1>General Settings</h1></div>
${error ? flashHtml({ kind: 'error', text: error }) : null}
<form method="post" action="/settings" class="card" id="settings-form">
  ${csrfField(ctx)}
  <h2 id="discuss">Discuss <small class="muted">Emails</small></h2>
  <label class="check"><input type="checkbox" id="customEmailServers" name="customEmailServers" value="on"${f.customEmailServers ? html` checked` : null} data-reveal="outlook-credentials">
    <span>Custom Email Servers<small>Send and receive through your own mail servers, such as Microsoft 365 with Outlook OAuth.</small></span></label>

  ${appProblemNotice(app.problem, app.affected)}
  <fieldset id="outlook-credentials"${f.customEmailServers ? null : html` hidden`}>
    <legend>Outlook Credentials</legend>
    ${o.enabled
      ? html`<p class="help"><span class="tag tag-green">Microsoft Outlook installed</span> Mail servers may sign in with "Connect your Outlook account". Uninstall it in <a href="/apps?filter=none&amp;q=Outlook">Apps</a>.</p>`
      : html`<p class="flash flash-warning">Microsoft Outlook is not installed: install it in <a href="/apps?filter=none&amp;q=Outlook">Apps</a> (remove the Apps filter, search Outlook), or Connect your Outlook account is refused.</p>`}
    <div class="grid">
      <div>
        <label for="clientId">Client ID</label>
        <input type="text" id="clientId" name="clientId" value="${f.clientId}" placeholder="00000000-0000-0000-0000-000000000000" autocomplete="off" spellcheck="false">
        <p class="help">The Application (client) ID from the app's Overview page in Azure.</p>
      </div>
      <div>
        <label for="clientSecret">Client Secret</label>
        <input type="password" id="clientSecret" name="clientSecret" value="" autocomplete="new-password"
          placeholder="${o.hasClientSecret ? 'Leave empty to keep the stored secret' : 'Paste the client secret Value'}">
        ${o.hasClientSecret
          ? html`<p class="help"><span class="tag tag-green">a secret is stored</span> Leave the field empty to keep it.</p>
        <label class="check plain"><input type="checkbox" name="clearClientSecret" value="on"><span>Remove the stored secret</span></label>`
          : html`<p class="help">The secret's <em>Value</em> (not its Secret ID), from Certificates &amp; secrets.</p>`}
      </div>
    </div>
    <div class="grid">
      <div>
        <label for="clientSecretExpiresAt">Client secret expiry date</label>
        <input type="date" id="clientSecretExpiresAt" name="clientSecretExpiresAt" value="${f.clientSecretExpiresAt}">
        ${expiryNote(o.clientSecretDaysLeft)}
      </div>
      <div>
        <label for="cloud">Microsoft cloud</label>
        <select id="cloud" name="cloud">
          ${(Object.keys(cloudLabels) as Cloud[]).map((c) => html`<option value="${c}"${c === f.cloud ? html` selected` : null}>${cloudLabels[c]}</option>`)}
        </select>
      </div>
      <div>
        <label for="tenant">Tenant</label>
        <input type="text" id="tenant" name="tenant" value="${f.tenant}" placeholder="common" spellcheck="false">
        <p class="help"><code>common</code> (work and personal accounts), <code>organizations</code>, <code>consumers</code>, a tenant ID or a domain.</p>
      </div>
    </div>
    <h3>Authority</h3>
    <p><code>${o.authority}</code></p>
    <h3>Redirect URI</h3>
    ${redirectUriBlock(view, origin)}
    <h3>Servers</h3>
    <p><a href="/outgoing-servers">Outgoing Email Servers</a> · <a href="/incoming-servers">Incoming Mail Servers</a></p>
  </fieldset>

  <h2 class="section" id="mass-mailing">Email Marketing <small class="muted">mass mailing</small></h2>
  <label class="check"><input type="checkbox" name="dedicatedServer" value="on"${f.dedicatedServer ? html` checked` : null} data-reveal="mass-mailing-server">
    <span>Dedicated server for mass mailings<small>Mass mailings go through one server of their own, whatever their From.</small></span></label>
  <div id="mass-mailing-server"${f.dedicatedServer ? null : html` hidden`}>
    ${massMailingServerField(view, f, servers, error)}
  </div>

  <div class="actions form-actions"><button type="submit">Save</button></div>
</form>
<div class="card" id="developer-tools">
  <h2>Developer Tools</h2>
  ${ctx.developerMode
    ? html`<p>Developer mode is on: the Technical menu shows System Parameters.</p><p><a class="button secondary" href="/parameters">System Parameters</a> <a class="button secondary" href="/settings?debug=0">Deactivate Developer Mode</a></p>`
    : html`<p class="muted">Shows technical pages such as System Parameters (where the procedure sets mail.default.from and mail.catchall.domain) in the Technical menu. The Technical menu's last item turns it on and off too.</p>
  <p><a class="button secondary" href="/settings?debug=1">Activate Developer Mode (debug mode)</a></p>`}
</div>`;
}

/** The save's flash: a failed credentials check warns (the save stands: the check is advice), the rest are successes. */
export function savedFlash(check: CredentialsCheck | undefined): Flash {
  if (!check) return { kind: 'success', text: 'Settings saved.' };
  if (check.result === 'failed') return { kind: 'warning', text: `Settings saved, but the Outlook credentials check failed: ${check.message}` };
  return { kind: 'success', text: `Settings saved. ${check.message}` };
}

/** The address this request reached Juniper at (through the trusted proxy, if any). */
export function originOf(request: FastifyRequest): string {
  return `${request.protocol}://${request.host}`;
}

export function settingsPage(services: Pick<Services, 'incomingServers' | 'oauthAppStatus' | 'outgoingServers' | 'settings'>): FastifyPluginAsync {
  return async (app) => {
    app.get('/settings', { config: { access: 'admin' } }, async (request, reply) => {
      const view = await services.settings.get();
      const servers = await services.outgoingServers.list({ includeArchived: true });
      const ctx = pageContext(request, reply, 'settings');
      return renderPage(reply, 'General Settings', settingsBody(ctx, view, fromView(view), servers, originOf(request), await appProblemFacts(services, servers)), ctx);
    });

    app.post<{ Body: Form }>('/settings', { config: { access: 'admin' } }, async (request, reply) => {
      const body = request.body ?? {};
      const entered = fromPost(body);
      let check: CredentialsCheck | undefined;
      try {
        ({ credentialsCheck: check } = await services.settings.updateAndCheck(toPatch(entered, body), actorOf(request)));
      } catch (e) {
        const err = formError(e);
        const ctx = pageContext(request, reply, 'settings');
        const [view, servers] = await Promise.all([services.settings.get(), services.outgoingServers.list({ includeArchived: true })]);
        const typedSecret = text(body, 'clientSecret').trim() !== '';
        const said = pageWording(err.message);
        const message = typedSecret ? `${said}${/[.!?]$/.test(said) ? '' : '.'} The Client Secret you typed was not saved (the page never shows it again): paste it again before saving.` : said;
        return renderPage(reply, 'General Settings', settingsBody(ctx, view, entered, servers, originOf(request), await appProblemFacts(services, servers), message), ctx, err.status);
      }
      return redirectWithFlash(reply, '/settings', savedFlash(check));
    });
  };
}
