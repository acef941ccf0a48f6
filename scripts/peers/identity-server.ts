// Runs the test identity server (test/peers/identity-server.ts) on its own, e.g. for a Dovecot started from
// the shell with scripts/peers/dovecot-start.sh:
//   IDP_PORT=14080 node --import tsx scripts/peers/identity-server.ts &     (stop: kill $!)
//   curl "http://127.0.0.1:14080/mock/mint?user=alice@example.test&ttl=600"     (aud https://outlook.office.com;
//   add &scope=Mail.Send for a Microsoft Graph token, which Dovecot refuses)
//   With IDP_APPS set, /token authenticates clients as Entra ID does, e.g. for `juniper settings set` against it:
//   IDP_APPS='[{"clientId":"1b4f9c5e-0000-4000-8000-123456789abc","secret":"Abc8Q~value","tenants":["contoso.onmicrosoft.com"]}]'
//   then juniper params set microsoft_outlook.endpoint http://127.0.0.1:14080/contoso.onmicrosoft.com/oauth2/v2.0/
//   (a wrong secret answers AADSTS7000215, an unknown Client ID AADSTS700016, an unknown tenant AADSTS90002,
//   "secretExpired": true AADSTS7000222; test/peers/README.md).
// Env: IDP_PORT (14080; 0 = any free port), IDP_TOKEN_TTL (3600 s), IDP_ALG (RS256 | ES256),
//      IDP_DEFAULT_USER (alice@example.test), IDP_QUIET=1 (no line per token check),
//      IDP_APPS (JSON array of {clientId, secret, tenants?, secretExpired?}; unset: any client is accepted)
import { startIdentityServer, type RegisteredApp } from '../../test/peers/identity-server.js';

const alg = process.env.IDP_ALG ?? 'RS256';
if (alg !== 'RS256' && alg !== 'ES256') throw new Error(`IDP_ALG must be RS256 or ES256, not ${alg}`);
const port = Number(process.env.IDP_PORT ?? 14080);
const ttl = Number(process.env.IDP_TOKEN_TTL ?? 3600);
if (!Number.isInteger(port) || !Number.isFinite(ttl)) throw new Error('IDP_PORT and IDP_TOKEN_TTL must be numbers');

const quiet = process.env.IDP_QUIET === '1';
const apps = process.env.IDP_APPS ? (JSON.parse(process.env.IDP_APPS) as unknown) : [];
if (!Array.isArray(apps) || !apps.every((a: unknown) => typeof a === 'object' && a !== null && typeof (a as RegisteredApp).clientId === 'string' && typeof (a as RegisteredApp).secret === 'string')) {
  throw new Error('IDP_APPS must be a JSON array of {"clientId": "...", "secret": "...", "tenants"?: ["..."], "secretExpired"?: true}');
}
const server = await startIdentityServer({
  port,
  alg,
  tokenTtlSeconds: ttl,
  apps: apps as RegisteredApp[],
  ...(process.env.IDP_DEFAULT_USER ? { defaultUser: process.env.IDP_DEFAULT_USER } : {}),
  log: (line) => {
    if (!quiet) console.log(`${new Date().toISOString()} ${line}`);
  },
});
console.log(`identity server listening on ${server.url} (${alg} tokens, ttl ${ttl}s${apps.length ? `, ${apps.length} registered app${apps.length === 1 ? '' : 's'}` : ''})`);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    server.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
