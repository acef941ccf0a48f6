// `juniper doctor`'s decisions, as a pure function of facts gathered elsewhere: each finding says what is
// wrong (or right) and what to do, one line each. `fail` means mail does not flow (or will stop); `warn`
// means something a careful admin wants to know. Kept free of I/O so every rule has a table test.
import type { IncomingServerView } from '../incoming/servers.js';
import { dedicatedServerProblem, dedicatedServerState } from '../outgoing/mass-mailing.js';
import type { OutgoingServerView } from '../outgoing/servers.js';
import type { SettingsView } from '../settings/settings.js';
import { ignoredBaseUrlEnv, ignoredBaseUrlEnvMessage } from '../settings/public-address.js';
import { formatPortList, portAllowed, PORTS_PARAMETER, usualPorts, type PortRange } from '../mail-servers/port-policy.js';

export type Level = 'ok' | 'warn' | 'fail';

export interface Finding {
  level: Level;
  check: string;
  message: string;
}

export interface DoctorFacts {
  database: string;
  pendingMigrations: string[];
  baseUrl: string | null;
  /** JUNIPER_BASE_URL in doctor's own environment; the stored web.base.url overrides it once set. */
  envBaseUrl: string | null;
  settings: SettingsView;
  notificationsAddress: string | null;
  outgoing: OutgoingServerView[];
  incoming: IncomingServerView[];
  /** The app-wide Outlook problem Microsoft last reported for the current credentials (app-status.ts), if any. */
  appProblem?: { code: string | null; message: string; since: string } | null;
  /** Local clock minus the identity provider's Date header; null when it could not be asked (see clockError). */
  clockSkewMs: number | null;
  clockSource: string;
  clockError: string | null;
  vault: VaultFacts;
  /**
   * The port policy as connections apply it (host-guard.ts): mail.server.allowed_ports in effect, and the active
   * servers held to it (owned by a user other than an admin), by id.
   */
  portPolicy: { allowed: readonly PortRange[]; held: { outgoing: readonly number[]; incoming: readonly number[] } };
}

export interface VaultFacts {
  /** Where the keys were looked for (describeKeySource). */
  keySource: string;
  configured: readonly string[];
  /** No key configured and no secret stored: a fresh install whose first `serve` creates the key. */
  noKeyYet: boolean;
  stored: number;
  /** Secrets that do not decrypt, by name (never a value). */
  unreadable: { label: string; name: string; keyId: string; reason: string }[];
}

const CLIENT_SECRET_LABEL = 'settings.outlook.client_secret';
const LISTED_UNREADABLE = 10;

/** Tokens are checked with a few minutes' leeway; beyond this, sign-ins and token checks start failing. */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000;

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

export function diagnose(f: DoctorFacts): Finding[] {
  const out: Finding[] = [];
  const add = (level: Level, check: string, message: string) => out.push({ level, check, message });

  add('ok', 'database', `${f.database} is reachable.`);
  if (f.pendingMigrations.length) add('fail', 'migrations', `${f.pendingMigrations.length} migration(s) not applied (${f.pendingMigrations.join(', ')}): run \`juniper migrate\` (serve and worker also apply them at start).`);
  else add('ok', 'migrations', 'The schema is up to date.');

  vaultFindings(f.vault, add);

  const outlookServers = [...f.outgoing, ...f.incoming].filter((s) => s.auth === 'outlook' && s.active);
  const usesOutlook = f.settings.outlook.enabled || outlookServers.length > 0;
  baseUrlFindings(f, usesOutlook, add);

  if (usesOutlook) {
    const o = f.settings.outlook;
    if (!o.clientId || !o.hasClientSecret) {
      const missing = [!o.clientId && 'Client ID', !o.hasClientSecret && 'Client Secret'].filter(Boolean).join(' and ');
      add('fail', 'outlook credentials', `The Outlook ${missing} ${missing.includes('and') ? 'are' : 'is'} not set: paste them from the Azure app registration into Settings → Outlook Credentials.`);
    } else if (f.vault.unreadable.some((u) => u.label === CLIENT_SECRET_LABEL)) {
      add('fail', 'outlook credentials', 'A client secret is stored but cannot be decrypted (see the vault finding): restore the vault key, or paste the secret again in Settings → Outlook Credentials after `juniper vault forget`.');
    } else if (f.appProblem) {
      // Set is not working: Microsoft refused these credentials, so every Outlook server is stopped.
      add('fail', 'outlook credentials', `Microsoft refused the Outlook app's credentials${f.appProblem.code ? ` (${f.appProblem.code})` : ''} since ${f.appProblem.since}, for every Outlook server: ${f.appProblem.message} Saving corrected credentials in Settings → Outlook Credentials sends the waiting mails at once.`);
    } else add('ok', 'outlook credentials', `Client ID ${o.clientId} and a client secret are set (authority ${o.authority}).`);
    if (o.hasClientSecret) {
      if (o.clientSecretDaysLeft === null) add('warn', 'client secret expiry', 'The client secret\'s expiry date is not recorded: enter it in Settings so Juniper warns you 30, 14, 7 and 1 days before.');
      // Critical (expired, or a week or less left) fails: mail stops, or is about to, unless someone acts now.
      else if (o.clientSecretWarning) add(o.clientSecretWarning.level === 'critical' ? 'fail' : 'warn', 'client secret expiry', o.clientSecretWarning.message);
      else add('ok', 'client secret expiry', `The client secret is valid for ${o.clientSecretDaysLeft} more days.`);
    }
  }

  const activeOutgoing = f.outgoing.filter((s) => s.active && !s.archived);
  if (activeOutgoing.length === 0) add('fail', 'outgoing servers', 'No active outgoing mail server: every mail fails with "no outgoing mail server". Create one (Settings → Outgoing Email Servers).');
  if (!f.notificationsAddress) add('warn', 'notifications address', 'mail.default.from and mail.catchall.domain are not both set: mail whose From matches no server is sent as its own From through the fallback server, which Microsoft refuses unless that mailbox may send as it.');
  for (const s of activeOutgoing) {
    serverFindings('outgoing', s, 'Test Connection', add);
    portFindings('outgoing', s, f.portPolicy, add);
  }
  massMailingFindings(f, add);
  for (const s of f.incoming.filter((x) => x.active && !x.archived)) {
    serverFindings('incoming', s, 'Test and Confirm', add);
    portFindings('incoming', s, f.portPolicy, add);
    if (s.state === 'draft') add('warn', `incoming server "${s.name}" (id ${s.id})`, 'It is a draft and is not fetched: click Test and Confirm.');
    if (s.lastError) add('fail', `incoming server "${s.name}" (id ${s.id})`, `The last fetch failed${s.errorSince ? ` (failing since ${s.errorSince})` : ''}: ${s.lastError}`);
  }

  if (f.clockSkewMs === null) add('warn', 'clock', `Could not compare the clock with ${f.clockSource}: ${f.clockError ?? 'no Date header'}.`);
  else if (Math.abs(f.clockSkewMs) > MAX_CLOCK_SKEW_MS) {
    add('fail', 'clock', `This machine's clock is ${Math.round(Math.abs(f.clockSkewMs) / 1000)} s ${f.clockSkewMs > 0 ? 'ahead of' : 'behind'} ${f.clockSource}: tokens will be refused. Enable time synchronisation (e.g. systemd-timesyncd or chrony).`);
  } else add('ok', 'clock', `The clock is within ${Math.round(Math.abs(f.clockSkewMs) / 1000)} s of ${f.clockSource}.`);
  return out;
}

function vaultFindings(v: VaultFacts, add: (level: Level, check: string, message: string) => void): void {
  if (v.noKeyYet) {
    add('ok', 'vault key', `No key yet and no secret stored: \`juniper serve\` creates one on first start (looked in ${v.keySource}).`);
    return;
  }
  if (v.unreadable.length === 0) {
    add('ok', 'vault key', `${v.stored} stored secret(s) decrypt with the configured key(s), from ${v.keySource}.`);
    return;
  }
  const shown = v.unreadable.slice(0, LISTED_UNREADABLE).map((u) => `${u.name} (${u.reason})`);
  const more = v.unreadable.length > LISTED_UNREADABLE ? `, and ${v.unreadable.length - LISTED_UNREADABLE} more` : '';
  const ids = [...new Set(v.unreadable.map((u) => u.keyId))].filter((k) => !v.configured.includes(k));
  const advice = ids.length
    ? `Juniper looked in ${v.keySource}. Restore the key with id ${ids.join(', ')}: put the data directory's vault.key back from a backup, or run this command with JUNIPER_SECRET_KEY exactly as the service gets it. If the key is lost for good, \`juniper vault forget --key-id ${ids[0]} --yes\` deletes those secrets so they can be entered again.`
    : 'They are damaged or were written under another context: enter them again.';
  add('fail', 'vault key', `${v.unreadable.length} of ${v.stored} stored secret(s) cannot be decrypted: ${shown.join('; ')}${more}. ${advice}`);
}

function baseUrlFindings(f: DoctorFacts, usesOutlook: boolean, add: (level: Level, check: string, message: string) => void): void {
  if (!f.baseUrl) {
    add(usesOutlook ? 'fail' : 'warn', 'web.base.url', 'web.base.url is not set, so Juniper cannot tell Microsoft where to send you back: set it (or JUNIPER_BASE_URL) to the address people use, e.g. https://mail.example.com.');
    return;
  }
  if (!URL.canParse(f.baseUrl)) {
    add('fail', 'web.base.url', `${f.baseUrl} is not a URL: set web.base.url (or JUNIPER_BASE_URL) to the address people use, e.g. https://mail.example.com.`);
    return;
  }
  const ignored = ignoredBaseUrlEnv(f.envBaseUrl, f.baseUrl);
  if (ignored) add('warn', 'JUNIPER_BASE_URL', ignoredBaseUrlEnvMessage(ignored, f.baseUrl));
  const url = new URL(f.baseUrl);
  if (url.protocol !== 'https:') {
    // Entra ID accepts http redirect URIs for localhost only.
    if (LOOPBACK_HOSTS.has(url.hostname)) add('warn', 'web.base.url', `${f.baseUrl} is plain http: fine on this machine, but Microsoft accepts http only for localhost; use https for anyone else.`);
    else add(usesOutlook ? 'fail' : 'warn', 'web.base.url', `${f.baseUrl} is not https: Microsoft refuses http redirect URIs except for localhost, and session cookies travel in clear. Put a TLS proxy in front and set web.base.url to its https address.`);
  } else add('ok', 'web.base.url', `${f.baseUrl} is https.`);
  if (usesOutlook && f.settings.outlook.redirectUri) add('ok', 'redirect uri', `Register exactly ${f.settings.outlook.redirectUri} as a Web redirect URI in the Azure app registration.`);
}

/**
 * The dedicated mass-mailing server, in the words the waiting mails carry (dedicatedServerProblem). Archived or
 * gone fails: nothing but an admin sends those mails again. Inactive warns: turning Active off is a pause an admin
 * may mean (the mails still wait, and fail after three days).
 */
function massMailingFindings(f: DoctorFacts, add: (level: Level, check: string, message: string) => void): void {
  const { dedicatedServer, serverId } = f.settings.massMailing;
  if (!dedicatedServer) return;
  if (serverId === null) {
    add('warn', 'mass mailing', 'The dedicated server for mass mailings is on but no server is chosen: mass mailings are routed like any other mail. Choose one in Settings → Email Marketing.');
    return;
  }
  const s = f.outgoing.find((x) => x.id === serverId);
  const facts = s && { id: s.id, name: s.name, active: s.active, archived: s.archived };
  const problem = dedicatedServerProblem(serverId, facts);
  if (problem === null) add('ok', 'mass mailing', `Mass mailings go through the dedicated server "${s!.name}" (id ${serverId}).`);
  else add(dedicatedServerState(facts) === 'inactive' ? 'warn' : 'fail', 'mass mailing', problem);
}

function serverFindings(kind: 'outgoing' | 'incoming', s: OutgoingServerView | IncomingServerView, testName: string, add: (level: Level, check: string, message: string) => void): void {
  const check = `${kind} server "${s.name}" (id ${s.id})`;
  if (s.auth === 'outlook') {
    if (s.token.appProblem) add('fail', check, `Outlook app problem: ${s.token.appProblem.message}`);
    else if (s.token.status === 'missing') add('fail', check, 'Not connected to Outlook: click Connect your Outlook account on the server.');
    else if (s.token.status === 'needs_reconnect') add('fail', check, `The Outlook account must be reconnected${s.token.error ? `: ${s.token.error.message}` : ''}. Click Connect your Outlook account.`);
  }
  if (!s.lastTest) add('warn', check, `Never tested: click ${testName}.`);
  else if (!s.lastTest.ok) add('fail', check, `The last ${testName} (${s.lastTest.at}) failed: ${s.lastTest.message}`);
  else if (s.auth !== 'outlook' || s.token.status === 'valid') add('ok', check, `${testName} passed at ${s.lastTest.at}.`);
}

/**
 * A server held to the port policy on a port off the list: every connection to it is refused
 * (JUNIPER_ERR_PORT_NOT_ALLOWED), so its mails wait or its mailbox is not fetched, and nothing says so until someone
 * looks at them. Warned, not failed: the rest of the mail flows, and nothing is lost while the admin decides.
 */
function portFindings(kind: 'outgoing' | 'incoming', s: OutgoingServerView | IncomingServerView, policy: DoctorFacts['portPolicy'], add: (level: Level, check: string, message: string) => void): void {
  if (!policy.held[kind].includes(s.id) || portAllowed(s.port, policy.allowed)) return;
  const allowed = formatPortList(policy.allowed);
  const usual = usualPorts(policy.allowed, kind === 'outgoing' ? 'smtp' : 'imap');
  const owner = s.ownerUserId === null ? '' : ` (it belongs to user id ${s.ownerUserId}, who is not an admin)`;
  const effect = kind === 'outgoing' ? 'its mails wait (failure type port_not_allowed) and are not sent' : 'its mailbox is not fetched';
  add(
    'warn',
    `${kind} server "${s.name}" (id ${s.id})`,
    `Port ${s.port} is not in ${PORTS_PARAMETER} (${allowed || 'none'}), the ports of servers of users other than admins${owner}: every connection to it is refused with JUNIPER_ERR_PORT_NOT_ALLOWED, so ${effect}. ` +
      `Change the server's port${usual.length ? ` (to ${usual.join(' or ')}, if its provider offers it)` : ''}, or allow the port: \`juniper params set ${PORTS_PARAMETER} "${allowed ? `${allowed}, ` : ''}${s.port}"\`.`,
  );
}

/** The process exit code: 1 when anything fails, else 0 (warnings alone do not fail). */
export const exitCodeOf = (findings: readonly Finding[]): number => (findings.some((x) => x.level === 'fail') ? 1 : 0);
