// Query strings carry one-time secrets (setup tokens, OAuth codes and states): logs keep only the names.
const sensitive = new Set(['token', 'code', 'state', 'access_token', 'refresh_token', 'client_secret', 'session_state']);

export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = new URLSearchParams(url.slice(q + 1));
  const kept = [...params.keys()].map((k) => (sensitive.has(k.toLowerCase()) ? `${k}=[redacted]` : `${k}=${params.get(k) ?? ''}`));
  return `${url.slice(0, q)}?${kept.join('&')}`;
}
