// Query strings carry one-time secrets (setup tokens, OAuth codes and states): logs keep only the names. A value
// that is itself a URL with a query (the `next` of /login: a signed-out browser back from Microsoft is sent to
// /login?next=/microsoft_outlook/confirm?code=…&state=…) is redacted the same way, or the code would be logged
// and could be replayed within its lifetime.
const sensitive = new Set(['token', 'code', 'state', 'access_token', 'refresh_token', 'client_secret', 'session_state']);

export function redactUrl(url: string, depth = 0): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = new URLSearchParams(url.slice(q + 1));
  const kept = [...params].map(([k, v]) => {
    if (sensitive.has(k.toLowerCase())) return `${k}=[redacted]`;
    // Nested deeper than a next's next is no URL Juniper makes: kept out entirely.
    if (v.includes('?')) return depth < 2 ? `${k}=${redactUrl(v, depth + 1)}` : `${k}=[redacted]`;
    return `${k}=${v}`;
  });
  return `${url.slice(0, q)}?${kept.join('&')}`;
}
