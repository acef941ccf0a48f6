// Runs the test identity server (test/peers/identity-server.ts) on its own, e.g. for a Dovecot started from
// the shell with scripts/peers/dovecot-start.sh:
//   IDP_PORT=14080 node --import tsx scripts/peers/identity-server.ts &     (stop: kill $!)
//   curl "http://127.0.0.1:14080/mock/mint?user=alice@example.test&ttl=600"     (aud https://outlook.office.com;
//   add &scope=Mail.Send for a Microsoft Graph token, which Dovecot refuses)
// Env: IDP_PORT (14080; 0 = any free port), IDP_TOKEN_TTL (3600 s), IDP_ALG (RS256 | ES256),
//      IDP_DEFAULT_USER (alice@example.test), IDP_QUIET=1 (no line per token check)
import { startIdentityServer } from '../../test/peers/identity-server.js';

const alg = process.env.IDP_ALG ?? 'RS256';
if (alg !== 'RS256' && alg !== 'ES256') throw new Error(`IDP_ALG must be RS256 or ES256, not ${alg}`);
const port = Number(process.env.IDP_PORT ?? 14080);
const ttl = Number(process.env.IDP_TOKEN_TTL ?? 3600);
if (!Number.isInteger(port) || !Number.isFinite(ttl)) throw new Error('IDP_PORT and IDP_TOKEN_TTL must be numbers');

const quiet = process.env.IDP_QUIET === '1';
const server = await startIdentityServer({
  port,
  alg,
  tokenTtlSeconds: ttl,
  ...(process.env.IDP_DEFAULT_USER ? { defaultUser: process.env.IDP_DEFAULT_USER } : {}),
  log: (line) => {
    if (!quiet) console.log(`${new Date().toISOString()} ${line}`);
  },
});
console.log(`identity server listening on ${server.url} (${alg} tokens, ttl ${ttl}s)`);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    server.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
