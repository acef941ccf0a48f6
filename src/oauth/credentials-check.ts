// The credentials check after a save of Settings that changed the Client ID, the client secret, the cloud or the
// tenant: one app-only token request (client_credentials, `<graph resource>/.default`) to the authority's token
// endpoint, so a wrong secret (most often its Secret ID pasted for its Value) shows at the save, not at the first
// Connect or token refresh hours later. Advice, never a gate: the save is already committed when this runs.
// The request goes through oauth-client.ts like Connect and refresh do, with the same protections: https only
// (plain http for a loopback test authority alone), the admin-only authority (Settings' cloud host and validated
// tenant, or microsoft_outlook.endpoint), and errors that never carry the secret. Nobody keeps the token.
import { isAppError } from '../lib/errors.js';
import { clientCredentialsToken, hostOf } from './oauth-client.js';
import { explainOAuthError, oauthErrorDetails, type OAuthErrorDetails } from './oauth-errors.js';
import { microsoft } from './microsoft.js';

export type CredentialsCheckResult = 'ok' | 'failed' | 'skipped';

/** What PUT /api/v1/settings answers as `credentialsCheck`, the page shows as a flash and the CLI prints. Never holds the secret. */
export interface CredentialsCheck {
  result: CredentialsCheckResult;
  /**
   * `AADSTSnnnn` or Microsoft's OAuth `error` when it refused; `timeout` / `unreachable` when it could not be asked;
   * `http_<status>` for an answer that is not OAuth; `incomplete` / `multi_tenant_authority` when skipped.
   */
  code?: string;
  message: string;
}

/** The whole request, body included: a save must not hang on a silent authority. */
export const CREDENTIALS_CHECK_TIMEOUT_MS = 5_000;

/** Authorities on which Microsoft refuses app-only tokens: they name no directory to issue one in. */
const MULTI_TENANT = new Set(['common', 'organizations', 'consumers']);

export interface CheckInput {
  clientId: string | null;
  /** Decrypted; null when none is stored. */
  clientSecret: string | null;
  authority: string;
  /** Graph's resource in this cloud (https://graph.microsoft.com …): the `.default` scope is asked for it. */
  graphResource: string;
}

export type CheckPlan =
  | { kind: 'skip'; check: CredentialsCheck }
  | { kind: 'request'; tenant: string; host: string; scope: string };

/** The tenant an authority names: the first path segment (`https://login.microsoftonline.com/<tenant>/oauth2/v2.0/`). */
export function authorityTenant(authority: string): string | null {
  try {
    const first = new URL(authority).pathname.split('/').find((s) => s !== '');
    return first ? decodeURIComponent(first).toLowerCase() : null;
  } catch {
    return null;
  }
}

/** Whether to ask Microsoft at all. Pure. */
export function planCredentialsCheck(c: Omit<CheckInput, 'clientSecret'> & { hasClientSecret: boolean }): CheckPlan {
  if (!c.clientId || !c.hasClientSecret) {
    const missing = !c.clientId && !c.hasClientSecret ? 'the Client ID and the client secret' : !c.clientId ? 'the Client ID' : 'the client secret';
    return {
      kind: 'skip',
      check: { result: 'skipped', code: 'incomplete', message: `Not checked with Microsoft: ${missing} ${missing.includes(' and ') ? 'are' : 'is'} not set. Juniper checks the credentials when both the Client ID and the client secret's Value are saved.` },
    };
  }
  const tenant = authorityTenant(c.authority);
  if (tenant === null || MULTI_TENANT.has(tenant)) {
    return {
      kind: 'skip',
      check: {
        result: 'skipped',
        code: 'multi_tenant_authority',
        message: `Not checked with Microsoft: the tenant is ${tenant ?? 'not named in the authority'}, and Microsoft issues the app-only token the check asks for only in one directory (a tenant ID or a verified domain), not on common, organizations or consumers. The credentials are first tried at Connect your Outlook account; to have them checked at each save, set the tenant to your directory's (Directory (tenant) ID on the app's Overview page in Azure).`,
      },
    };
  }
  return { kind: 'request', tenant, host: hostOf(microsoft.tokenUrl(c.authority)), scope: `${c.graphResource}/.default` };
}

/** The check's result for the token request's outcome (null: a token was issued). Pure. */
export function credentialsCheckResult(plan: { tenant: string; host: string }, error: unknown): CredentialsCheck {
  if (error === null) {
    return {
      result: 'ok',
      message: `Microsoft accepted the Outlook credentials: the Client ID and the client secret are valid in tenant ${plan.tenant} (${plan.host}). Each Outlook server still signs in its mailbox with Connect your Outlook account.`,
    };
  }
  const details = oauthErrorDetails(error);
  if (!details) {
    // Not a token answer (the vault could not read the stored secret, say): AppError messages carry no secrets.
    return { result: 'failed', ...(isAppError(error) ? { code: error.code } : {}), message: `The credentials could not be checked: ${isAppError(error) ? error.message : 'an unexpected error'}` };
  }
  return { result: 'failed', ...refusal(details, plan) };
}

const NOT_CHECKED = 'The settings were saved but the credentials were not checked';

function refusal(d: OAuthErrorDetails, plan: { tenant: string; host: string }): { code: string; message: string } {
  if (d.oauthError === null && d.aadsts === null) {
    const said = d.description ?? '';
    if (d.httpStatus === null && d.errorClass === 'transient') {
      // oauth-client.ts words these "<host> did not answer within 5 s" and "<host>: ECONNREFUSED".
      const timeout = / did not answer within /.test(said);
      const reason = said.startsWith(`${plan.host}: `) ? said.slice(plan.host.length + 2) : said;
      return {
        code: timeout ? 'timeout' : 'unreachable',
        message: `Could not reach Microsoft's sign-in service at ${plan.host} (${timeout ? `no answer within ${CREDENTIALS_CHECK_TIMEOUT_MS / 1000} s` : reason}). ${NOT_CHECKED}: check that this machine can reach ${plan.host} over HTTPS (DNS, firewall, outbound proxy), then save them again.`,
      };
    }
    if (d.httpStatus === null || d.httpStatus === 200) return { code: 'unusable_answer', message: `The credentials could not be checked: ${said || 'no usable answer'}.` };
    if (d.errorClass === 'transient') return { code: `http_${d.httpStatus}`, message: `${plan.host} answered HTTP ${d.httpStatus} (Microsoft's sign-in service is having trouble). ${NOT_CHECKED}: save them again later.` };
    return {
      code: `http_${d.httpStatus}`,
      message: `${plan.host} answered HTTP ${d.httpStatus} without an OAuth answer: check the tenant and the parameter microsoft_outlook.endpoint (an authority ending in /oauth2/v2.0/).`,
    };
  }
  const code = d.aadsts !== null ? `AADSTS${d.aadsts}` : (d.oauthError ?? 'oauth_error');
  const said = [d.oauthError, d.aadsts !== null ? `AADSTS${d.aadsts}` : null].filter(Boolean).join(', ');
  const { explanation, action } = explainOAuthError(d.aadsts, d.oauthError, { description: d.description });
  if (d.errorClass === 'transient') return { code, message: `${explanation} ${NOT_CHECKED}: save them again later. (Microsoft: ${said})` };
  // A multitenant app registered elsewhere is unknown to a directory until someone there consents (at Connect).
  const consentHint = d.aadsts === 700016 ? ` If the app is registered in another directory (a multitenant app), nobody in ${plan.tenant} has consented to it yet: Connect your Outlook account once, then save again.` : '';
  return { code, message: `${explanation} ${action}${consentHint} (Microsoft: ${said})` };
}

/** Asks Microsoft (or skips, saying why); never throws. */
export async function checkOutlookCredentials(c: CheckInput, options: { timeoutMs?: number } = {}): Promise<CredentialsCheck> {
  const plan = planCredentialsCheck({ ...c, hasClientSecret: c.clientSecret !== null && c.clientSecret !== '' });
  if (plan.kind === 'skip') return plan.check;
  try {
    await clientCredentialsToken(
      { clientId: c.clientId ?? '', clientSecret: c.clientSecret ?? '', authority: c.authority },
      { scope: plan.scope },
      { timeoutMs: options.timeoutMs ?? CREDENTIALS_CHECK_TIMEOUT_MS },
    );
    return credentialsCheckResult(plan, null);
  } catch (err) {
    return credentialsCheckResult(plan, err);
  }
}
