// Which address people reach Juniper at, and what goes wrong when they use another one. web.base.url is the
// one address Microsoft sends the browser back to; the session cookie belongs to the host the browser signed in
// at. A sign-in started at one host and answered at another finds no session and dead-ends, so the address
// Juniper prints and the page Connect is clicked on must be web.base.url's. Pure decisions, no I/O.
import net from 'node:net';
import { normaliseParameter } from './parameter-rules.js';

/** Listening on these, Juniper is reachable on this machine as localhost (all interfaces include loopback). */
function isLoopbackOrAny(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '0.0.0.0' || h === '::' || h === '::1' || (net.isIPv4(h) && h.startsWith('127.'));
}

/**
 * The address printed at start (the setup link, "listening on"): web.base.url when set; else
 * `http://localhost:<port>` when listening on loopback (or every interface), because Microsoft accepts an http
 * Redirect URI only for localhost, so that is the web.base.url such a machine ends up with, and a session begun
 * at 127.0.0.1 would not reach it; else the listening host.
 */
export function addressPeopleUse(stored: string | undefined, host: string, port: number): string {
  if (stored) return stored;
  if (isLoopbackOrAny(host)) return `http://localhost:${port}`;
  return `http://${net.isIPv6(host) ? `[${host}]` : host}:${port}`;
}

function normalisedBaseUrl(value: string): string {
  try {
    return normaliseParameter('web.base.url', value);
  } catch {
    return value;
  }
}

/**
 * JUNIPER_BASE_URL when the stored web.base.url differs from it, else null. The parameter wins, as README
 * documents (the variable only seeds it while unset): an admin may have changed it in the UI since.
 */
export function ignoredBaseUrlEnv(env: string | undefined | null, stored: string | undefined | null): string | null {
  if (!env || !stored) return null;
  const wanted = normalisedBaseUrl(env);
  return wanted === normalisedBaseUrl(stored) ? null : wanted;
}

/** What the start-up log and doctor say about an ignored JUNIPER_BASE_URL. */
export function ignoredBaseUrlEnvMessage(env: string, stored: string): string {
  return (
    `JUNIPER_BASE_URL is ${env} but the system parameter web.base.url is ${stored}, and the parameter wins (JUNIPER_BASE_URL only sets it while it is unset). ` +
    `To use ${env}, run \`juniper params set web.base.url ${env}\` (or change it under System Parameters in developer mode); to keep ${stored}, remove JUNIPER_BASE_URL or set it to ${stored}.`
  );
}

/** The host name the browser used: its Origin header when it sent one (a proxy may rewrite Host), else Host. */
export function browserHostname(origin: string | undefined, host: string): string {
  if (origin && origin !== 'null' && URL.canParse(origin)) return new URL(origin).hostname.toLowerCase();
  return URL.canParse(`http://${host}`) ? new URL(`http://${host}`).hostname.toLowerCase() : host.toLowerCase();
}

/**
 * Where Connect your Outlook account must be clicked instead (web.base.url's address of `path`), or null when
 * this browser is already there or web.base.url is unset. Cookies are kept per host name, not per port, so only
 * the host name counts: a proxy on :443 in front of :8080 shares the session.
 */
export function connectElsewhere(baseUrl: string | undefined | null, hostname: string, path: string): string | null {
  if (!baseUrl || !URL.canParse(baseUrl)) return null;
  if (new URL(baseUrl).hostname.toLowerCase() === hostname) return null;
  return `${baseUrl}${path}`;
}
