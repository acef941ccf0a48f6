// The credentials check's decisions without I/O: when it asks Microsoft at all, and what each answer tells the
// admin. The real requests run against the test identity server in test/integration/credentials-check.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppError } from '../lib/errors.js';
import { authorityTenant, credentialsCheckResult, planCredentialsCheck } from './credentials-check.js';
import { oauthFailure, parseMicrosoftError } from './oauth-errors.js';

const CLIENT_ID = '1b4f9c5e-0000-4000-8000-123456789abc';
const GRAPH = 'https://graph.microsoft.com';
const plan = { tenant: 'contoso.onmicrosoft.com', host: 'login.microsoftonline.com' };

function entra(status: number, error: string, code: number, message: string): AppError {
  const body = { error, error_description: `AADSTS${code}: ${message} Trace ID: 0f0e0d0c-0000-4000-8000-000000000001 Correlation ID: 0f0e0d0c-0000-4000-8000-000000000002 Timestamp: 2026-12-07 10:00:00Z`, error_codes: [code] };
  return oauthFailure({ ...parseMicrosoftError(body), httpStatus: status });
}

describe('authorityTenant', () => {
  for (const [authority, tenant] of [
    ['https://login.microsoftonline.com/common/oauth2/v2.0/', 'common'],
    ['https://login.microsoftonline.us/Contoso.com/oauth2/v2.0', 'contoso.com'],
    ['http://127.0.0.1:4000/7e1a4c0e-5f3b-4d2a-9c61-0d5b8a3f2e11/oauth2/v2.0/', '7e1a4c0e-5f3b-4d2a-9c61-0d5b8a3f2e11'],
    ['https://login.microsoftonline.com/', null],
    ['not a url', null],
  ] as const) {
    it(`reads ${String(tenant)} from ${authority}`, () => assert.equal(authorityTenant(authority), tenant));
  }
});

describe('planCredentialsCheck', () => {
  const base = { clientId: CLIENT_ID, hasClientSecret: true, graphResource: GRAPH };

  it('asks the token endpoint of a tenant id or domain for an app-only Graph token', () => {
    assert.deepEqual(planCredentialsCheck({ ...base, authority: 'https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/' }), {
      kind: 'request',
      tenant: 'contoso.onmicrosoft.com',
      host: 'login.microsoftonline.com',
      scope: 'https://graph.microsoft.com/.default',
    });
    const china = planCredentialsCheck({ ...base, graphResource: 'https://microsoftgraph.chinacloudapi.cn', authority: 'https://login.chinacloudapi.cn/contoso.cn/oauth2/v2.0/' });
    assert.equal(china.kind === 'request' && china.scope, 'https://microsoftgraph.chinacloudapi.cn/.default', 'the cloud\'s own Graph');
  });

  for (const tenant of ['common', 'organizations', 'consumers', 'Common']) {
    it(`skips a ${tenant} authority, saying why and what would allow the check`, () => {
      const p = planCredentialsCheck({ ...base, authority: `https://login.microsoftonline.com/${tenant}/oauth2/v2.0/` });
      assert.equal(p.kind, 'skip');
      assert.equal(p.kind === 'skip' && p.check.result, 'skipped');
      assert.equal(p.kind === 'skip' && p.check.code, 'multi_tenant_authority');
      assert.match(p.kind === 'skip' ? p.check.message : '', new RegExp(`tenant is ${tenant.toLowerCase()}.*only in one directory.*Connect your Outlook account.*Directory \\(tenant\\) ID`));
    });
  }

  for (const [clientId, hasClientSecret, missing] of [
    [null, true, /the Client ID is not set/],
    [CLIENT_ID, false, /the client secret is not set/],
    [null, false, /the Client ID and the client secret are not set/],
  ] as const) {
    it(`skips incomplete credentials (${String(missing)})`, () => {
      const p = planCredentialsCheck({ clientId, hasClientSecret, graphResource: GRAPH, authority: 'https://login.microsoftonline.com/contoso.com/oauth2/v2.0/' });
      assert.equal(p.kind === 'skip' && p.check.code, 'incomplete');
      assert.match(p.kind === 'skip' ? p.check.message : '', missing);
    });
  }
});

describe('credentialsCheckResult', () => {
  it('says ok with the tenant and host for an issued token', () => {
    const r = credentialsCheckResult(plan, null);
    assert.equal(r.result, 'ok');
    assert.equal(r.code, undefined);
    assert.match(r.message, /Microsoft accepted the Outlook credentials.*tenant contoso\.onmicrosoft\.com \(login\.microsoftonline\.com\)/);
  });

  const refusals: [string, AppError, string, RegExp][] = [
    ['a wrong secret (often the Secret ID pasted for the Value)', entra(401, 'invalid_client', 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app 'x'."), 'AADSTS7000215', /refused the client secret.*paste the client secret's Value, not its Secret ID.*\(Microsoft: invalid_client, AADSTS7000215\)$/],
    ['an expired secret', entra(401, 'invalid_client', 7000222, "The provided client secret keys for app 'x' are expired."), 'AADSTS7000222', /client secret has expired.*New client secret.*\(Microsoft: invalid_client, AADSTS7000222\)$/],
    ['an app unknown in the tenant', entra(400, 'unauthorized_client', 700016, "Application with identifier 'x' was not found in the directory 'Contoso'."), 'AADSTS700016', /no application with this Client ID.*Check the Client ID.*tenant.*multitenant app.*nobody in contoso\.onmicrosoft\.com has consented.*\(Microsoft: unauthorized_client, AADSTS700016\)$/],
    ['an unknown tenant', entra(400, 'invalid_request', 90002, "Tenant 'fabrikam' not found."), 'AADSTS90002', /does not know the tenant.*Check the tenant in Settings.*\(Microsoft: invalid_request, AADSTS90002\)$/],
    ['an outage answer', entra(503, 'temporarily_unavailable', 50196, 'The server is temporarily unavailable.'), 'AADSTS50196', /were not checked: save them again later\. \(Microsoft: temporarily_unavailable, AADSTS50196\)$/],
  ];
  for (const [what, error, code, says] of refusals) {
    it(`fails ${what} with ${code} and says what to do`, () => {
      const r = credentialsCheckResult(plan, error);
      assert.deepEqual([r.result, r.code], ['failed', code]);
      assert.match(r.message, says);
    });
  }

  it('names the host it could not reach, for a refused connection and a timeout', () => {
    const refused = credentialsCheckResult(plan, oauthFailure({ httpStatus: null, description: 'login.microsoftonline.com: ECONNREFUSED' }));
    assert.deepEqual([refused.result, refused.code], ['failed', 'unreachable']);
    assert.match(refused.message, /^Could not reach Microsoft's sign-in service at login\.microsoftonline\.com \(ECONNREFUSED\)\. The settings were saved but the credentials were not checked: check that this machine can reach login\.microsoftonline\.com over HTTPS/);
    const slow = credentialsCheckResult(plan, oauthFailure({ httpStatus: null, description: 'login.microsoftonline.com did not answer within 5 s' }));
    assert.equal(slow.code, 'timeout');
    assert.match(slow.message, /at login\.microsoftonline\.com \(no answer within 5 s\)/);
  });

  it('reads an HTTP error without an OAuth body as a wrong endpoint, and a 5xx as trouble at Microsoft', () => {
    const notFound = credentialsCheckResult(plan, oauthFailure({ httpStatus: 404 }));
    assert.deepEqual([notFound.code, /microsoft_outlook\.endpoint/.test(notFound.message)], ['http_404', true]);
    const outage = credentialsCheckResult(plan, oauthFailure({ httpStatus: 502 }));
    assert.deepEqual([outage.code, /save them again later/.test(outage.message)], ['http_502', true]);
  });

  it('reports another Juniper error by its code and message, and anything else without its text', () => {
    const vault = credentialsCheckResult(plan, new AppError('JUNIPER_ERR_VALIDATION', 'Something the admin can act on.'));
    assert.deepEqual([vault.result, vault.code, vault.message], ['failed', 'JUNIPER_ERR_VALIDATION', 'The credentials could not be checked: Something the admin can act on.']);
    const odd = credentialsCheckResult(plan, new Error('secret-bearing internals'));
    assert.equal(odd.message, 'The credentials could not be checked: an unexpected error');
  });
});
