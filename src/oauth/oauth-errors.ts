// What a Microsoft OAuth failure means and who can fix it (DESIGN §5). Pure: the token store decides from
// errorClass whether to mark every Outlook server (app), one server (server) or nobody (transient); the
// callback page and server forms show explainAadsts / humanOAuthMessage. Microsoft's own words are kept
// (error, AADSTS code, description, trace id) because admins quote them to Microsoft support.
import { AppError, isAppError } from '../lib/errors.js';
import { microsoft } from './microsoft.js';

/** app: the Azure app's credentials or registration (every Outlook server); server: this server's grant; transient: retry. */
export type OAuthErrorClass = 'app' | 'server' | 'transient';

export interface MicrosoftErrorFacts {
  /** RFC 6749 `error`, e.g. invalid_grant. */
  oauthError: string | null;
  aadsts: number | null;
  /** Microsoft's description without the AADSTS prefix and the trace/correlation/timestamp tail. */
  description: string | null;
  traceId: string | null;
  correlationId: string | null;
}

/** AppError.details of JUNIPER_ERR_OAUTH. Never holds a secret. */
export interface OAuthErrorDetails extends MicrosoftErrorFacts {
  /** null when no HTTP answer arrived (network failure, timeout). */
  httpStatus: number | null;
  errorClass: OAuthErrorClass;
  transient: boolean;
}

export interface Explanation {
  /** What happened, in words an administrator understands. */
  explanation: string;
  /** What to do about it. */
  action: string;
}

const DESCRIPTION_TAIL = /\s*(?:Trace ID|Correlation ID|Timestamp):[\s\S]*$/;
const AADSTS_PREFIX = /^\s*AADSTS(\d+)\s*:\s*/;

/** Reads `{ error, error_description: "AADSTSnnnn: …", error_codes: [n], trace_id, correlation_id }` (token endpoint or callback query). */
export function parseMicrosoftError(body: unknown): MicrosoftErrorFacts {
  const b = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  const text = (v: unknown): string | null => (typeof v === 'string' && v.trim() !== '' ? v.trim() : null);
  const rawDescription = text(b.error_description);
  const prefix = rawDescription === null ? null : AADSTS_PREFIX.exec(rawDescription);
  const codes = Array.isArray(b.error_codes) ? b.error_codes : [];
  const firstCode: unknown = codes[0];
  const aadsts =
    typeof firstCode === 'number' && Number.isInteger(firstCode) ? firstCode : prefix?.[1] !== undefined ? Number(prefix[1]) : null;
  const description =
    rawDescription === null ? null : oneLine(rawDescription.replace(AADSTS_PREFIX, '').replace(DESCRIPTION_TAIL, '')) || null;
  return {
    oauthError: text(b.error),
    aadsts,
    description,
    traceId: text(b.trace_id) ?? (rawDescription ? tailValue(rawDescription, 'Trace ID') : null),
    correlationId: text(b.correlation_id) ?? (rawDescription ? tailValue(rawDescription, 'Correlation ID') : null),
  };
}

/** The same facts from the callback's query (`?error=access_denied&error_description=AADSTS65004: …`). */
export function parseAadsts(error: string | null | undefined, description: string | null | undefined): MicrosoftErrorFacts {
  return parseMicrosoftError({ error, error_description: description });
}

// The AADSTS code is checked before `error`: Microsoft's `error` is coarse (invalid_grant covers a revoked
// grant and an unknown tenant alike), the code is the precise fact.
const APP_CODES = new Set([
  7000215, // invalid client secret
  7000222, // client secret expired
  700016, // application not found in the directory
  7000218, // no client secret sent
  50011, // redirect URI not registered
  90002, // tenant not found
  900023, // tenant identifier neither a domain nor an id
  9002346, // app registered for personal accounts only, used with a work account
]);
const SERVER_CODES = new Set([
  700082, 70008, // refresh token expired by inactivity
  50173, // grant revoked (password change, sessions revoked)
  65001, 65004, // consent missing / declined
  50076, 50078, 50079, 50158, // MFA or external challenge needed
  70000, 54005, 501481, 9002313, // grant invalid, code already redeemed, PKCE mismatch, unusable token
  700084, // single-page-app refresh token expired
  50020, 50034, 50053, 50055, 50057, 50126, // account: other tenant, unknown, locked, password expired, disabled, bad password
  53003, // Conditional Access
  90094, 90008, // admin consent
  500011, // Exchange Online not in the user's tenant
]);
const APP_ERRORS = new Set(['invalid_client', 'unauthorized_client']);
const TRANSIENT_ERRORS = new Set(['temporarily_unavailable', 'server_error']);

export function classifyOAuthError(p: { oauthError: string | null; aadsts: number | null; httpStatus: number | null }): OAuthErrorClass {
  if (p.httpStatus === null && p.oauthError === null && p.aadsts === null) return 'transient'; // no answer at all
  if (p.httpStatus !== null && (p.httpStatus >= 500 || p.httpStatus === 429)) return 'transient';
  if (p.oauthError !== null && TRANSIENT_ERRORS.has(p.oauthError)) return 'transient';
  if (p.aadsts !== null && APP_CODES.has(p.aadsts)) return 'app';
  if (p.aadsts !== null && SERVER_CODES.has(p.aadsts)) return 'server';
  if (p.oauthError !== null && APP_ERRORS.has(p.oauthError)) return 'app';
  if (p.oauthError !== null || p.aadsts !== null) return 'server';
  // An HTTP error without an OAuth body: the endpoint is not a Microsoft token endpoint, for every server.
  return 'app';
}

const reconnect = 'Click Connect your Outlook account on this server again.';
const redirectAction = (redirectUri: string | null | undefined): string =>
  `In the Azure portal (App registrations → your app → Authentication), add ${
    redirectUri ? `exactly ${redirectUri}` : `exactly <web.base.url>${microsoft.redirectPath}`
  } as a Web redirect URI (not Single-page application); it must match the parameter web.base.url character for character.`;

type Explain = (x: { redirectUri?: string | null }) => Explanation;
const fixed = (explanation: string, action: string): Explain => () => ({ explanation, action });

const declined = fixed(
  'The account declined the permissions Juniper asked for.',
  'Click Connect your Outlook account again and accept on Microsoft\'s consent page, or ask an administrator to grant consent for the organisation.',
);
const consentMissing = fixed(
  'Nobody has consented to Juniper\'s permissions (SMTP.Send, IMAP.AccessAsUser.All) for this account.',
  'Grant admin consent under API permissions in the Azure portal, or click Connect your Outlook account and accept the consent prompt.',
);

const byCode = new Map<number, Explain>([
  [65004, declined],
  [50011, (x) => ({ explanation: 'The redirect URI Juniper sent is not registered on the Azure app.', action: redirectAction(x.redirectUri) })],
  [50020, fixed('The account belongs to another organisation (tenant), or is a personal Microsoft account, and the Azure app does not accept such accounts.', 'In the Azure portal (App registrations → your app → Authentication), set Supported account types to accept that kind of account, or sign in with an account of the app\'s own directory.')],
  [65001, consentMissing],
  [700016, fixed('Microsoft knows no application with this Client ID in the directory it was asked about.', 'Check the Client ID in Settings (Application (client) ID on the app\'s Overview page) and the tenant: it must be the app\'s directory, or common/organizations for a multitenant app.')],
  [7000215, fixed('Microsoft refused the client secret.', 'In Settings, paste the client secret\'s Value, not its Secret ID; if the Value was not copied when the secret was created, create a new secret in Certificates & secrets.')],
  [7000222, fixed('The client secret has expired.', 'Create a new client secret in the Azure portal (App registrations → your app → Certificates & secrets → New client secret), paste its Value in Settings and set its expiry date there.')],
  [7000218, fixed('Juniper sent no client secret.', 'Paste the client secret\'s Value in Settings.')],
  [700082, fixed('The refresh token expired after a long time without use.', reconnect)],
  [70008, fixed('The authorization code or refresh token expired without being used.', reconnect)],
  [50173, fixed('Microsoft revoked the grant, for example because the account\'s password changed or an administrator revoked its sessions.', reconnect)],
  [50076, fixed('Microsoft requires multi-factor authentication for this account.', 'Click Connect your Outlook account and complete the multi-factor sign-in.')],
  [50079, fixed('The account must register for multi-factor authentication.', 'Click Connect your Outlook account and complete the multi-factor registration and sign-in.')],
  [50078, fixed('The account\'s multi-factor authentication has expired.', 'Click Connect your Outlook account and complete the multi-factor sign-in.')],
  [53003, fixed('A Conditional Access policy of the organisation blocked the sign-in.', 'Ask your Entra ID administrator to allow Juniper under Conditional Access; the Sign-in logs in the Entra admin center name the policy.')],
  [90094, fixed('An administrator must consent to Juniper\'s permissions for this organisation.', 'Ask an administrator to grant admin consent under API permissions in the Azure portal, then connect again.')],
  [90008, fixed('Consent is missing: the app must also request Microsoft Graph User.Read (Sign in and read user profile).', 'Under API permissions keep Microsoft Graph User.Read (added by default) and grant admin consent, then connect again.')],
  [9002313, fixed('Microsoft found the request malformed, or the stored token unusable.', `${reconnect} If it persists, check that microsoft_outlook.endpoint ends with /oauth2/v2.0/.`)],
  [500011, fixed('The account\'s organisation has no Office 365 Exchange Online (the resource was not found in that tenant).', 'Sign in with an account that has an Exchange Online mailbox, or check the tenant in Settings.')],
  [50126, fixed('Wrong username or password.', 'Connect again and sign in with the account\'s current password.')],
  [50034, fixed('The account does not exist in this organisation (tenant).', 'Sign in with an account of that directory, or set the tenant in Settings to common or the account\'s own tenant.')],
  [50057, fixed('The account is disabled.', 'Ask an administrator to enable it, or connect another account.')],
  [50053, fixed('The account is locked after too many failed sign-ins.', 'Wait, or ask an administrator to unlock it, then connect again.')],
  [50055, fixed('The account\'s password has expired.', 'Change the password, then connect again.')],
  [70000, fixed('Microsoft no longer accepts this grant (an authorization code or refresh token that is invalid or already used).', reconnect)],
  [54005, fixed('This sign-in was already used: each Microsoft answer can be redeemed once.', 'Click Connect your Outlook account again.')],
  [501481, fixed('The sign-in proof (PKCE) did not match the sign-in that was started.', 'Click Connect your Outlook account again and finish it in the same browser.')],
  [700084, fixed('The refresh token was issued to a single-page application and expired after 24 hours.', `${redirectAction(null)} Then connect again.`)],
  [90002, fixed('Microsoft does not know the tenant in the Outlook endpoint.', 'Check the tenant in Settings (common, organizations, consumers, a tenant id or a verified domain).')],
  [900023, fixed('The tenant in the Outlook endpoint is neither a tenant id nor a verified domain.', 'Check the tenant in Settings.')],
  [9002346, fixed('The Azure app accepts personal Microsoft accounts only.', 'In the Azure portal set Supported account types to include organisational accounts, or use the consumers tenant.')],
  [50158, fixed('An external security challenge must be completed.', 'Click Connect your Outlook account and complete the challenge.')],
]);

const byError = new Map<string, Explain>([
  ['access_denied', declined],
  ['consent_required', consentMissing],
  ['interaction_required', fixed('Microsoft needs the account to sign in interactively.', reconnect)],
  ['login_required', fixed('Microsoft needs the account to sign in interactively.', reconnect)],
  ['invalid_grant', fixed('Microsoft no longer accepts this server\'s grant.', reconnect)],
  ['invalid_client', fixed('Microsoft refused the app\'s credentials (Client ID or client secret).', 'Check the Client ID and paste the client secret\'s Value in Settings.')],
  ['unauthorized_client', fixed('The Azure app is not allowed to sign in this way or this account.', 'Check the app registration: a Web platform, its Supported account types and the Client ID in Settings.')],
  ['invalid_scope', fixed('Microsoft refused the permissions Juniper asked for.', 'Under API permissions add the delegated permissions SMTP.Send and IMAP.AccessAsUser.All, then connect again.')],
  ['temporarily_unavailable', fixed('Microsoft\'s sign-in service is temporarily unavailable.', 'Juniper retries automatically.')],
  ['server_error', fixed('Microsoft\'s sign-in service failed.', 'Juniper retries automatically.')],
]);

/** What happened and what to do, in one sentence pair; the fallback quotes Microsoft's own description. */
/** Every AADSTS code Juniper explains, in code order, for docs/troubleshooting.md (generated, never hand-kept). */
export function explainedAadstsCodes(): { code: number; errorClass: 'app' | 'server' | 'sign-in'; explanation: Explanation }[] {
  return [...byCode.entries()]
    .sort(([a], [b]) => a - b)
    .map(([code, explain]) => ({
      code,
      errorClass: APP_CODES.has(code) ? 'app' : SERVER_CODES.has(code) ? 'server' : 'sign-in',
      explanation: explain({ redirectUri: null }),
    }));
}

export function explainAadsts(
  code: number | null,
  oauthError: string | null,
  extra: { description?: string | null; redirectUri?: string | null } = {},
): string {
  const { explanation, action } = explainOAuthError(code, oauthError, extra);
  return `${explanation} ${action}`;
}

/** explainAadsts in two parts, for a page that shows the explanation and the action apart. */
export function explainOAuthError(
  code: number | null,
  oauthError: string | null,
  extra: { description?: string | null; redirectUri?: string | null } = {},
): Explanation {
  const known = (code !== null ? byCode.get(code) : undefined) ?? (oauthError !== null ? byError.get(oauthError) : undefined);
  if (known) return known(extra);
  const quoted = extra.description ? `: "${truncate(oneLine(extra.description), 300)}"` : '.';
  return {
    explanation: `Microsoft refused the request (${label(oauthError, code)})${quoted}`,
    action:
      code !== null
        ? `Look up AADSTS${code} at https://login.microsoftonline.com/error?code=${code}, fix the cause in the Azure portal or in Settings, then connect again.`
        : 'Fix the cause in the Azure portal or in Settings, then connect again.',
  };
}

/** One line for a server form, a log line or an API error. */
export function humanOAuthMessage(details: OAuthErrorDetails, context: { serverName?: string; redirectUri?: string | null } = {}): string {
  const who = context.serverName ? `Outlook server "${oneLine(context.serverName)}": ` : '';
  const retry = 'Juniper retries automatically.';
  if (details.oauthError === null && details.aadsts === null) {
    // No OAuth answer: a network failure, a timeout, an outage page, or a request Juniper could not make.
    const what = details.description ? oneLine(details.description) : details.httpStatus !== null ? `HTTP ${details.httpStatus}` : 'no answer';
    if (details.errorClass === 'transient') return `${who}Could not get a token from Microsoft's sign-in service (${what}); ${retry}`;
    if (details.description) return `${who}Cannot get a token from Microsoft: ${what}.`;
    if (details.httpStatus !== null) {
      return `${who}The Outlook endpoint answered HTTP ${details.httpStatus} without an OAuth error: check the tenant and microsoft_outlook.endpoint (an authority ending in /oauth2/v2.0/).`;
    }
    return `${who}Cannot get a token from Microsoft.`;
  }
  const { explanation, action } = explainOAuthError(details.aadsts, details.oauthError, {
    description: details.description,
    redirectUri: context.redirectUri ?? null,
  });
  return `${who}${explanation} ${details.errorClass === 'transient' ? retry : action} (Microsoft: ${label(details.oauthError, details.aadsts)})`;
}

/** The JUNIPER_ERR_OAUTH for a failure; `errorClass` overrides the classification when the caller knows better. */
export function oauthFailure(
  facts: Partial<MicrosoftErrorFacts> & { httpStatus: number | null },
  options: { cause?: unknown; errorClass?: OAuthErrorClass } = {},
): AppError {
  const base = {
    oauthError: facts.oauthError ?? null,
    aadsts: facts.aadsts ?? null,
    description: facts.description ?? null,
    traceId: facts.traceId ?? null,
    correlationId: facts.correlationId ?? null,
    httpStatus: facts.httpStatus,
  };
  const errorClass = options.errorClass ?? classifyOAuthError(base);
  const details: OAuthErrorDetails = { ...base, errorClass, transient: errorClass === 'transient' };
  return new AppError('JUNIPER_ERR_OAUTH', humanOAuthMessage(details), {
    ...(options.cause === undefined ? {} : { cause: options.cause }),
    details: { ...details },
  });
}

/** The typed details of a JUNIPER_ERR_OAUTH (AppError.details is untyped); undefined for any other error. */
export function oauthErrorDetails(err: unknown): OAuthErrorDetails | undefined {
  if (!isAppError(err) || err.code !== 'JUNIPER_ERR_OAUTH' || err.details === undefined) return undefined;
  return err.details as unknown as OAuthErrorDetails; // oauthFailure is the only place that builds these details
}

function label(oauthError: string | null, code: number | null): string {
  return [oauthError, code !== null ? `AADSTS${code}` : null].filter(Boolean).join(', ') || 'no error code';
}

function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ').replace(/\s{2,}/g, ' ').trim();
}

function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

function tailValue(description: string, name: string): string | null {
  const m = new RegExp(`${name}:\\s*([0-9a-fA-F-]{36})`).exec(description);
  return m?.[1] ?? null;
}
