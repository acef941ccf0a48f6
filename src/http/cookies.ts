// Every cookie Juniper sets (session, flash, developer mode) is Secure when Juniper's public address is https,
// not only when this request arrived over TLS: behind a TLS reverse proxy that Juniper does not trust (or that
// does not send X-Forwarded-Proto) the request looks like plain http, yet the browser talks https and must never
// send the session over plain http.
import type { FastifyReply, FastifyRequest } from 'fastify';

const SECURE_ATTRIBUTE = /;\s*secure\s*(;|$)/i;

/** Set-Cookie header values with `Secure` added where it is missing. */
export function markSecure(values: readonly string[]): string[] {
  return values.map((v) => (SECURE_ATTRIBUTE.test(v) ? v : `${v}; Secure`));
}

/** True when a web.base.url value is an https address. */
export function isHttpsBaseUrl(baseUrl: string | undefined): boolean {
  return baseUrl !== undefined && /^https:\/\//i.test(baseUrl.trim());
}

/**
 * An onSend hook, registered after @fastify/cookie's (which writes the Set-Cookie headers). The base URL is
 * read only for replies that set a cookie, so most requests cost no parameter lookup.
 */
export function secureCookiesHook(baseUrl: () => Promise<string | undefined>) {
  return async function secureCookies(_request: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> {
    const header = reply.getHeader('set-cookie');
    if (header === undefined) return payload;
    if (!isHttpsBaseUrl(await baseUrl())) return payload;
    const values = Array.isArray(header) ? header.map(String) : [String(header)];
    // reply.header() appends to an existing Set-Cookie, so the old values go first.
    void reply.removeHeader('set-cookie').header('set-cookie', markSecure(values));
    return payload;
  };
}
