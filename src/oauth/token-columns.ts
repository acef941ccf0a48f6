// The OAuth token columns every OAuth-capable server row has (TokenColumns in db/schema.ts), as src/oauth
// owns them: their view in API responses, their values on a new server, and forgetting them when the
// mailbox or the auth method changes. The server services ask these instead of naming the columns.
import type { OutgoingServer, TokenColumns } from '../db/schema.js';
import type { AppProblem } from './app-status.js';

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

export interface TokenView {
  status: 'missing' | 'valid' | 'needs_reconnect';
  account: string | null;
  expiresAt: string | null;
  error: { code: string | null; message: string } | null;
  /** An app-wide Outlook problem (client secret invalid or expired …): it stops every Outlook server. */
  appProblem: { code: string | null; message: string } | null;
}

export function tokenView(
  s: Pick<OutgoingServer, 'token_status' | 'token_account' | 'access_token_expires_at' | 'token_error_code' | 'token_error_message'> & { auth: string },
  appProblem: AppProblem | null = null,
): TokenView {
  const shared = s.auth === 'outlook' && appProblem ? { code: appProblem.code, message: appProblem.message } : null;
  return {
    status: s.token_status,
    account: s.token_account,
    expiresAt: iso(s.access_token_expires_at),
    error: s.token_error_message ? { code: s.token_error_code, message: s.token_error_message } : shared,
    appProblem: shared,
  };
}

/** A new server has no tokens yet (token_status defaults to 'missing'). */
export const noTokens: Omit<TokenColumns, 'token_status'> = {
  refresh_token_enc: null,
  access_token_enc: null,
  access_token_expires_at: null,
  token_account: null,
  token_error_code: null,
  token_error_message: null,
  token_refreshed_at: null,
  token_refresh_lock_until: null,
  token_refresh_lock_owner: null,
};

/** Forgets a server's Outlook tokens: after a change of mailbox or of auth method they belong to someone else. */
export function forgetTokens(current: { token_status: string }, stale: boolean) {
  return stale && current.token_status !== 'missing'
    ? { ...noTokens, token_status: 'missing' as const }
    : {};
}
