// The browser's part of "Connect your Outlook account", played with fetch and inject: sign in, ask Juniper
// for the authorize URL, let the identity server redirect back, and hand the answer to the confirm page.
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';

export interface BrowserSession {
  cookie: string;
  csrfToken: string;
}

export async function signIn(http: FastifyInstance, login: string, password: string): Promise<BrowserSession> {
  const res = await http.inject({ method: 'POST', url: '/api/v1/session', payload: { login, password } });
  assert.equal(res.statusCode, 200, res.body);
  const raw = res.headers['set-cookie'];
  const cookie = (Array.isArray(raw) ? String(raw[0]) : String(raw)).split(';')[0]!;
  return { cookie, csrfToken: res.json<{ csrfToken: string }>().csrfToken };
}

export async function startConnect(http: FastifyInstance, s: BrowserSession, kind: 'outgoing' | 'incoming', serverId: number): Promise<string> {
  const res = await http.inject({ method: 'POST', url: `/api/v1/${kind}-servers/${serverId}/outlook/connect`, headers: { cookie: s.cookie, 'x-csrf-token': s.csrfToken } });
  assert.equal(res.statusCode, 200, res.body);
  return res.json<{ authorizeUrl: string }>().authorizeUrl;
}

/** Follows the authorize URL at the identity server (it consents at once) and returns the redirect's query. */
export async function authorize(authorizeUrl: string): Promise<URLSearchParams> {
  const res = await fetch(authorizeUrl, { redirect: 'manual' });
  assert.equal(res.status, 302, await res.text());
  return new URL(res.headers.get('location')!).searchParams;
}

export async function confirm(http: FastifyInstance, s: BrowserSession, query: URLSearchParams | string) {
  return http.inject({ method: 'GET', url: `/microsoft_outlook/confirm?${query.toString()}`, headers: { cookie: s.cookie, accept: 'text/html' } });
}

/** The whole connect flow; returns the confirm response. */
export async function connectOutlook(http: FastifyInstance, s: BrowserSession, kind: 'outgoing' | 'incoming', serverId: number) {
  return confirm(http, s, await authorize(await startConnect(http, s, kind, serverId)));
}
