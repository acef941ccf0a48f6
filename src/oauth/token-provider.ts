// The seam between mail protocols and OAuth: SMTP and IMAP adapters ask for an access token for a server;
// the token store (Outlook issue) answers from its cache or refreshes. Nothing here knows Microsoft.
export type ServerKind = 'outgoing' | 'incoming';

/** What an access token is for: Entra ID issues a token for one resource per request (microsoft.ts). */
export type TokenResource = 'outlook' | 'graph';

export interface AccessToken {
  accessToken: string;
  /** Epoch milliseconds. */
  expiresAt: number;
}

export interface TokenProvider {
  /**
   * A usable access token for the resource (default 'outlook': SMTP or IMAP by kind); `renew` after the mail
   * server refused the last one. Throws a classified AppError.
   */
  accessToken(kind: ServerKind, serverId: number, options?: { renew?: boolean; resource?: TokenResource }): Promise<AccessToken>;
}
