// The seam between mail protocols and OAuth: SMTP and IMAP adapters ask for an access token for a server;
// the token store (Outlook issue) answers from its cache or refreshes. Nothing here knows Microsoft.
export type ServerKind = 'outgoing' | 'incoming';

export interface AccessToken {
  accessToken: string;
  /** Epoch milliseconds. */
  expiresAt: number;
}

export interface TokenProvider {
  /** A usable access token; `renew` after the mail server refused the last one. Throws a classified AppError. */
  accessToken(kind: ServerKind, serverId: number, options?: { renew?: boolean }): Promise<AccessToken>;
}
