// When to refresh an Outlook access token (DESIGN §5). Pure, so the token store's single-flight and
// database guard are tested apart from the timing rule.

/** An access token is reused until this long before it expires: an SMTP/IMAP session started on a token
 * about to expire would fail mid-login, and clocks of Juniper and Microsoft differ by seconds. */
export const REFRESH_MARGIN_MS = 5 * 60 * 1000;

/** Entra ID refresh tokens expire after 90 days without use; a daily refresh keeps idle servers connected
 * (a mailbox that sends once a quarter) with a wide margin for outages. */
export const KEEP_ALIVE_MS = 24 * 60 * 60 * 1000;

/**
 * Whether to ask Microsoft for a new access token now. `renew` is set after the mail server refused the
 * current token (revoked early, wrong scope): then the expiry date is not to be trusted.
 */
export function tokenNeedsRefresh(token: { expiresAt: number | null; hasAccessToken: boolean }, now: number, renew = false): boolean {
  if (renew || !token.hasAccessToken) return true;
  if (token.expiresAt === null || !Number.isFinite(token.expiresAt)) return true;
  return now >= token.expiresAt - REFRESH_MARGIN_MS;
}

/** Whether the daily keep-alive refresh is due; a server never refreshed is due at once. */
export function keepAliveDue(refreshedAt: number | null, now: number): boolean {
  if (refreshedAt === null || !Number.isFinite(refreshedAt)) return true;
  return now - refreshedAt >= KEEP_ALIVE_MS;
}
