// Microsoft (Entra ID, v2.0 endpoints) as an OAuth provider, described as data: what each server kind asks
// for, where the endpoints sit under an authority, and where the account name is in the id_token. The
// authority (`https://<login host>/<tenant>/oauth2/v2.0/`) comes from Settings or microsoft_outlook.endpoint.
import type { Cloud } from '../settings/settings.js';
import type { ServerKind, TokenResource } from './token-provider.js';

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

/** Microsoft Graph's resource in each cloud (US Gov: GCC High; a DoD tenant overrides the Graph endpoint). */
export const graphResources: Readonly<Record<Cloud, string>> = {
  global: 'https://graph.microsoft.com',
  usgov: 'https://graph.microsoft.us',
  china: 'https://microsoftgraph.chinacloudapi.cn',
};

/** Microsoft Graph's hosts, the only https hosts a Graph token is issued for and sent to (DoD has its own). */
export const graphHosts: ReadonlySet<string> = new Set(['graph.microsoft.com', 'graph.microsoft.us', 'dod-graph.microsoft.us', 'microsoftgraph.chinacloudapi.cn']);

/**
 * The Graph resource tokens are asked for: the endpoint's own when microsoft_outlook.graph_endpoint names a
 * Graph host (a DoD tenant's dod-graph.microsoft.us is an audience of its own), else the cloud's. A loopback
 * endpoint (tests) keeps the cloud's resource.
 */
export function graphResourceFor(cloud: Cloud, endpoint: string | null): string {
  if (endpoint) {
    const url = new URL(endpoint);
    if (url.protocol === 'https:' && graphHosts.has(url.hostname)) return url.origin;
  }
  return graphResources[cloud];
}

const permissions = (graph: string, names: readonly string[]) => names.map((p) => `${graph}/${p}`).join(' ');

/**
 * Graph sending (issue 13): Mail.Send for sendMail, User.Read for Test Connection's GET /me. Redeemed from the
 * Outlook consent's refresh token, so the consent must have listed them (consentScope). Mail.Send.Shared is not
 * asked for here: Entra ID puts every permission consented for the resource in the token anyway, and asking for
 * it would fail (AADSTS65001) every connection whose consent lacks it, even for sending as the mailbox itself.
 */
export function graphScope(graph: string = graphResources.global): string {
  return `offline_access ${permissions(graph, ['Mail.Send', 'User.Read'])}`;
}

/** The scope of a token request: one resource only. */
export function scopeFor(kind: ServerKind, resource: TokenResource = 'outlook', graph: string = graphResources.global): string {
  return resource === 'graph' ? graphScope(graph) : scopes[kind];
}

/**
 * The scope of the authorize request: the consent. Unlike a token request it may span resources, so one
 * consent covers SMTP and, for a server that may send through Graph, Graph's permissions as well, with
 * Mail.Send.Shared for sending as another mailbox (/users/{address}/sendMail, with Send As rights in Exchange).
 */
export function consentScope(kind: ServerKind, withGraph: boolean, graph: string = graphResources.global): string {
  return withGraph ? `${scopes[kind]} ${permissions(graph, ['Mail.Send', 'Mail.Send.Shared', 'User.Read'])}` : scopes[kind];
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

export const microsoft = { redirectPath, scopes, accountClaims, scopeFor, consentScope, authorizeUrl, tokenUrl } as const;
