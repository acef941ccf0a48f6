// Microsoft (Entra ID, v2.0 endpoints) as an OAuth provider, described as data: what each server kind asks
// for, where the endpoints sit under an authority, and where the account name is in the id_token. The
// authority (`https://<login host>/<tenant>/oauth2/v2.0/`) comes from Settings or microsoft_outlook.endpoint.
import type { ServerKind } from './token-provider.js';

/** Appended to web.base.url; registered in Azure as a Web redirect URI, character for character. */
export const redirectPath = '/microsoft_outlook/confirm';

/**
 * One resource per request: Entra ID issues an access token for a single resource, so mixing Graph scopes
 * (User.Read, Mail.Send) with outlook.office.com ones makes it refuse the request or return a token that
 * Exchange rejects. offline_access brings the refresh token; openid + email the id_token naming the account.
 */
export const scopes: Readonly<Record<ServerKind, string>> = {
  outgoing: 'offline_access openid email https://outlook.office.com/SMTP.Send',
  incoming: 'offline_access openid email https://outlook.office.com/IMAP.AccessAsUser.All',
};

/** Where the id_token names the signed-in account, best first: personal accounts may lack `upn`. */
export const accountClaims = ['preferred_username', 'email', 'upn'] as const;

export function scopeFor(kind: ServerKind): string {
  return scopes[kind];
}

export function authorizeUrl(authority: string): string {
  return `${base(authority)}authorize`;
}

export function tokenUrl(authority: string): string {
  return `${base(authority)}token`;
}

// Settings tolerate an endpoint without its trailing slash; the endpoints are relative to the slash.
function base(authority: string): string {
  return authority.endsWith('/') ? authority : `${authority}/`;
}

export const microsoft = { redirectPath, scopes, accountClaims, scopeFor, authorizeUrl, tokenUrl } as const;
