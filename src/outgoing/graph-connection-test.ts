// Test Connection for a server that sends through Microsoft Graph: a Graph token from the Outlook connection,
// then GET /v1.0/me (User.Read), which names the account mails would be sent as. Nothing is sent: Graph has
// no dry-run sendMail, so Mail.Send is read from the token's own scopes when the token says (a JWT's `scp`).
import type { AccessTokenSource } from './mail-transport.js';
import { GRAPH_TIMEOUT_MS, graphError, graphToken } from './graph-transport.js';

export interface GraphTestOutcome {
  ok: boolean;
  stage: 'credentials' | 'connect' | 'auth' | 'done';
  message: string;
  /** The account Graph signed in (userPrincipalName or mail), when it answered. */
  account?: string;
}

/** The delegated scopes in a JWT access token's `scp`, or undefined when the token is not readable as one. */
export function tokenScopes(accessToken: string): string[] | undefined {
  const payload = accessToken.split('.')[1];
  if (!payload) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { scp?: unknown };
    return typeof claims.scp === 'string' ? claims.scp.split(' ').filter(Boolean) : undefined;
  } catch {
    return undefined;
  }
}

export async function testGraphConnection(
  server: { name: string; username: string | null },
  tokenSource: AccessTokenSource,
  baseUrl: string,
  timeoutMs = 20_000,
): Promise<GraphTestOutcome> {
  const url = `${baseUrl.replace(/\/+$/, '')}/v1.0/me`;
  const waitMs = Math.min(timeoutMs, GRAPH_TIMEOUT_MS);
  const get = async (renew: boolean): Promise<{ response: Response; token: string }> => {
    const token = await graphToken(tokenSource, renew);
    return { response: await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(waitMs), redirect: 'error' }), token };
  };
  let answer: { response: Response; token: string };
  try {
    answer = await get(false);
    if (answer.response.status === 401) answer = await get(true);
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown; name?: unknown; cause?: { code?: unknown } };
    if (e.code === 'JUNIPER_ERR_OAUTH_TOKEN_UNAVAILABLE') {
      return { ok: false, stage: 'credentials', message: `No Microsoft Graph token for "${server.name}": ${String(e.message)} Reconnect the Outlook account (the consent must include Mail.Send and User.Read), then test again.` };
    }
    const why = e.name === 'TimeoutError' ? `no answer within ${Math.round(waitMs / 1000)} s` : typeof e.cause?.code === 'string' ? e.cause.code : String(e.message);
    return { ok: false, stage: 'connect', message: `Microsoft Graph at ${url} could not be reached (${why}). Check this machine's network and the microsoft_outlook.graph_endpoint parameter.` };
  }
  const { response, token } = answer;
  if (response.status !== 200) {
    const { code, message } = await graphError(response);
    const said = [code, message].filter(Boolean).join(': ');
    return {
      ok: false,
      stage: 'auth',
      message: `Microsoft Graph refused GET /me for "${server.name}" with ${response.status}${said ? ` (${said})` : ''}. Reconnect the Outlook account; the app registration needs the delegated Graph permissions Mail.Send and User.Read.`,
    };
  }
  const body = (await response.json().catch(() => ({}))) as { mail?: unknown; userPrincipalName?: unknown };
  const account = [body.userPrincipalName, body.mail].find((v): v is string => typeof v === 'string' && v !== '') ?? '';
  const scopes = tokenScopes(token);
  if (scopes && !scopes.some((s) => s.toLowerCase() === 'mail.send')) {
    return { ok: false, stage: 'auth', account, message: `Microsoft Graph signed in ${account}, but the token does not carry Mail.Send (it has ${scopes.join(', ') || 'no scopes'}): add the delegated permission Mail.Send in Azure and reconnect the Outlook account.` };
  }
  return { ok: true, stage: 'done', account, message: `Microsoft Graph accepted the Outlook connection: signed in as ${account}; mails are sent through Graph's sendMail (nothing was sent by this test).` };
}
