import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppError, isAppError } from '../lib/errors.js';
import {
  classifyOAuthError,
  explainAadsts,
  explainOAuthError,
  humanOAuthMessage,
  oauthErrorDetails,
  oauthFailure,
  parseAadsts,
  parseMicrosoftError,
  type OAuthErrorClass,
  type OAuthErrorDetails,
} from './oauth-errors.js';

const APP_ID = '1b4f9c5e-2a7d-4f0e-8c3b-9d6a5e4f3b21';
const TRACE = '2f7b1c8e-4a3d-4c1e-9b0a-5d6e7f801234';
const CORRELATION = '8d2c3b4a-1e0f-4d9c-8b7a-6f5e4d3c2b1a';

/** A token endpoint error body as Entra ID sends it (CRLF before the trace tail, as on the wire). */
function entraBody(error: string, code: number, text: string): Record<string, unknown> {
  return {
    error,
    error_description: `AADSTS${code}: ${text}\r\nTrace ID: ${TRACE}\r\nCorrelation ID: ${CORRELATION}\r\nTimestamp: 2025-03-14 09:12:45Z`,
    error_codes: [code],
    timestamp: '2025-03-14 09:12:45Z',
    trace_id: TRACE,
    correlation_id: CORRELATION,
    error_uri: `https://login.microsoftonline.com/error?code=${code}`,
  };
}

interface Case {
  name: string;
  status: number | null;
  body: unknown;
  errorClass: OAuthErrorClass;
  aadsts: number | null;
  /** What the one-line message must say. */
  says: RegExp;
}

const cases: Case[] = [
  {
    name: 'expired client secret',
    status: 401,
    body: entraBody('invalid_client', 7000222, `The provided client secret keys for app '${APP_ID}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.`),
    errorClass: 'app',
    aadsts: 7000222,
    says: /client secret has expired.*Certificates & secrets.*Settings/,
  },
  {
    name: 'Secret ID pasted instead of the Value',
    status: 401,
    body: entraBody('invalid_client', 7000215, `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${APP_ID}'.`),
    errorClass: 'app',
    aadsts: 7000215,
    says: /Value, not its Secret ID/,
  },
  {
    name: 'unknown application',
    status: 400,
    body: entraBody('unauthorized_client', 700016, `Application with identifier '${APP_ID}' was not found in the directory 'Contoso'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.`),
    errorClass: 'app',
    aadsts: 700016,
    says: /Client ID.*tenant/,
  },
  {
    name: 'refresh token expired by inactivity',
    status: 400,
    body: entraBody('invalid_grant', 700082, 'The refresh token has expired due to inactivity. The token was issued on 2024-10-01T08:00:00.0000000Z and was inactive for 90.00:00:00.'),
    errorClass: 'server',
    aadsts: 700082,
    says: /Connect your Outlook account/,
  },
  {
    name: 'grant revoked after a password change',
    status: 400,
    body: entraBody('invalid_grant', 50173, "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on '2025-01-02T10:00:00.0000000Z' and the TokensValidFrom date (before which tokens are not valid) for this user is '2025-03-01T07:30:00.0000000Z'."),
    errorClass: 'server',
    aadsts: 50173,
    says: /password changed.*Connect your Outlook account/,
  },
  {
    name: 'consent missing',
    status: 400,
    body: entraBody('invalid_grant', 65001, `The user or administrator has not consented to use the application with ID '${APP_ID}' named 'Juniper'. Send an interactive authorization request for this user and resource.`),
    errorClass: 'server',
    aadsts: 65001,
    says: /admin consent/,
  },
  {
    name: 'MFA required',
    status: 400,
    body: entraBody('interaction_required', 50076, "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '00000002-0000-0ff1-ce00-000000000000'."),
    errorClass: 'server',
    aadsts: 50076,
    says: /multi-factor/,
  },
  {
    name: 'MFA enrolment required',
    status: 400,
    body: entraBody('invalid_grant', 50079, "Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication to access '00000002-0000-0ff1-ce00-000000000000'."),
    errorClass: 'server',
    aadsts: 50079,
    says: /multi-factor registration/,
  },
  {
    name: 'Conditional Access',
    status: 400,
    body: entraBody('interaction_required', 53003, 'Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.'),
    errorClass: 'server',
    aadsts: 53003,
    says: /Conditional Access/,
  },
  {
    name: 'code already redeemed',
    status: 400,
    body: entraBody('invalid_grant', 54005, 'OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.'),
    errorClass: 'server',
    aadsts: 54005,
    says: /redeemed once/,
  },
  {
    name: 'SPA refresh token',
    status: 400,
    body: entraBody('invalid_grant', 700084, 'The refresh token was issued to a single page app (SPA), and therefore has a fixed, limited lifetime of 1.00:00:00, which cannot be extended.'),
    errorClass: 'server',
    aadsts: 700084,
    says: /single-page application.*Web redirect URI/,
  },
  {
    name: 'malformed request',
    status: 400,
    body: entraBody('invalid_request', 9002313, 'Invalid request. Request is malformed or invalid.'),
    errorClass: 'server',
    aadsts: 9002313,
    says: /malformed/,
  },
  {
    name: 'Exchange Online missing in the tenant',
    status: 400,
    body: entraBody('invalid_resource', 500011, 'The resource principal named https://outlook.office.com was not found in the tenant named Contoso. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.'),
    errorClass: 'server',
    aadsts: 500011,
    says: /Exchange Online/,
  },
  {
    name: 'user not in the tenant',
    status: 400,
    body: entraBody('invalid_grant', 50034, 'The user account {EUII Hidden} does not exist in the contoso.onmicrosoft.com directory. To sign into this application, the account must be added to the directory.'),
    errorClass: 'server',
    aadsts: 50034,
    says: /does not exist in this organisation/,
  },
  {
    name: 'wrong password',
    status: 400,
    body: entraBody('invalid_grant', 50126, 'Error validating credentials due to invalid username or password.'),
    errorClass: 'server',
    aadsts: 50126,
    says: /Wrong username or password/,
  },
  {
    name: 'Microsoft temporarily unavailable',
    status: 503,
    body: entraBody('temporarily_unavailable', 90033, 'A transient error has occurred. Please try again.'),
    errorClass: 'transient',
    aadsts: 90033,
    says: /retries automatically/,
  },
  {
    name: 'server_error on HTTP 500',
    status: 500,
    body: entraBody('server_error', 90100, 'An error occurred while processing the request.'),
    errorClass: 'transient',
    aadsts: 90100,
    says: /retries automatically/,
  },
  {
    name: 'throttled without a body',
    status: 429,
    body: null,
    errorClass: 'transient',
    aadsts: null,
    says: /HTTP 429.*retries automatically/,
  },
  {
    name: 'an HTML outage page',
    status: 502,
    body: '<html><body>Bad Gateway</body></html>',
    errorClass: 'transient',
    aadsts: null,
    says: /HTTP 502.*retries automatically/,
  },
  {
    name: 'no answer at all (network)',
    status: null,
    body: null,
    errorClass: 'transient',
    aadsts: null,
    says: /Could not get a token.*retries automatically/,
  },
  {
    name: 'a 404 without an OAuth body (wrong endpoint)',
    status: 404,
    body: null,
    errorClass: 'app',
    aadsts: null,
    says: /microsoft_outlook\.endpoint/,
  },
  {
    name: 'an unknown code',
    status: 400,
    body: entraBody('invalid_request', 1234567, 'Something Juniper has never seen.'),
    errorClass: 'server',
    aadsts: 1234567,
    says: /"Something Juniper has never seen\.".*error\?code=1234567/,
  },
];

describe('Microsoft token endpoint errors', () => {
  for (const c of cases) {
    it(`classifies ${c.name} as ${c.errorClass} and says what to do`, () => {
      const facts = parseMicrosoftError(c.body);
      assert.equal(facts.aadsts, c.aadsts);
      const errorClass = classifyOAuthError({ ...facts, httpStatus: c.status });
      assert.equal(errorClass, c.errorClass);
      const details: OAuthErrorDetails = { ...facts, httpStatus: c.status, errorClass, transient: errorClass === 'transient' };
      const message = humanOAuthMessage(details);
      assert.match(message, c.says);
      assert.doesNotMatch(message, /[\r\n]/, 'one line');
      assert.doesNotMatch(message, /Trace ID|Correlation ID/, 'the trace tail stays in details');
    });
  }
});

describe('parseMicrosoftError', () => {
  it('keeps the error, the code, the description without prefix and tail, and the trace ids', () => {
    const facts = parseMicrosoftError(entraBody('invalid_grant', 700082, 'The refresh token has expired due to inactivity.'));
    assert.deepEqual(facts, {
      oauthError: 'invalid_grant',
      aadsts: 700082,
      description: 'The refresh token has expired due to inactivity.',
      traceId: TRACE,
      correlationId: CORRELATION,
    });
  });

  it('reads the code from the description when error_codes is missing (single-line tail as well)', () => {
    const facts = parseMicrosoftError({
      error: 'invalid_client',
      error_description: `AADSTS7000222: The provided client secret keys are expired. Trace ID: ${TRACE} Correlation ID: ${CORRELATION} Timestamp: 2025-03-14 09:12:45Z`,
    });
    assert.equal(facts.aadsts, 7000222);
    assert.equal(facts.description, 'The provided client secret keys are expired.');
    assert.equal(facts.traceId, TRACE);
    assert.equal(facts.correlationId, CORRELATION);
  });

  it('yields nulls for bodies that are not Microsoft errors', () => {
    const empty = { oauthError: null, aadsts: null, description: null, traceId: null, correlationId: null };
    for (const body of [null, undefined, 'oops', 42, [], {}, { error: '' }, { error: 7 }]) assert.deepEqual(parseMicrosoftError(body), empty);
  });

  it('parses the callback query of a declined consent', () => {
    const facts = parseAadsts('access_denied', 'AADSTS65004: User declined to consent to access the app.');
    assert.equal(facts.oauthError, 'access_denied');
    assert.equal(facts.aadsts, 65004);
    assert.equal(facts.description, 'User declined to consent to access the app.');
  });

  it('parses a callback error without a description', () => {
    assert.deepEqual(parseAadsts('access_denied', undefined), { oauthError: 'access_denied', aadsts: null, description: null, traceId: null, correlationId: null });
  });
});

describe('classifyOAuthError', () => {
  const table: Array<[oauthError: string | null, aadsts: number | null, httpStatus: number | null, expected: OAuthErrorClass]> = [
    ['invalid_client', null, 401, 'app'],
    ['unauthorized_client', null, 400, 'app'],
    ['invalid_client', 7000215, 401, 'app'],
    ['invalid_request', 50011, 400, 'app'],
    ['invalid_grant', null, 400, 'server'],
    ['interaction_required', null, 400, 'server'],
    ['consent_required', null, 400, 'server'],
    ['invalid_grant', 70000, 400, 'server'],
    ['invalid_grant', 50078, 400, 'server'],
    // The code wins over a coarse `error`: unauthorized_client with a per-account code is the account's problem.
    ['unauthorized_client', 50020, 400, 'server'],
    ['temporarily_unavailable', null, 400, 'transient'],
    ['server_error', null, 400, 'transient'],
    // 5xx and 429 are transient whatever they say, even an app-wide code.
    ['invalid_client', 7000222, 503, 'transient'],
    [null, null, 429, 'transient'],
    [null, null, null, 'transient'],
    [null, null, 400, 'app'],
  ];
  for (const [oauthError, aadsts, httpStatus, expected] of table) {
    it(`${oauthError ?? '-'} / ${aadsts ?? '-'} / HTTP ${httpStatus ?? 'none'} -> ${expected}`, () => {
      assert.equal(classifyOAuthError({ oauthError, aadsts, httpStatus }), expected);
    });
  }
});

describe('explainAadsts', () => {
  const table: Array<[code: number | null, oauthError: string | null, says: RegExp]> = [
    [null, 'access_denied', /declined the permissions.*accept/],
    [65004, 'access_denied', /declined the permissions/],
    [50011, 'invalid_request', /exactly <web\.base\.url>\/microsoft_outlook\/confirm as a Web redirect URI/],
    [50020, 'unauthorized_client', /another organisation.*personal Microsoft account.*Supported account types/],
    [65001, 'invalid_grant', /consented.*grant admin consent|Grant admin consent/],
    [700016, 'unauthorized_client', /no application with this Client ID.*Check the Client ID.*tenant/],
    [7000215, 'invalid_client', /paste the client secret's Value, not its Secret ID/],
    [7000222, 'invalid_client', /expired.*Certificates & secrets.*paste its Value in Settings/],
    [700082, 'invalid_grant', /expired.*Connect your Outlook account/],
    [50173, 'invalid_grant', /revoked.*password changed.*Connect your Outlook account/],
    [50076, 'interaction_required', /multi-factor.*Connect your Outlook account/],
    [50079, 'interaction_required', /multi-factor.*Connect your Outlook account/],
    [53003, 'interaction_required', /Conditional Access/],
    [90094, 'invalid_grant', /administrator must consent/],
    [90008, 'invalid_grant', /User\.Read.*admin consent/],
    [9002313, 'invalid_request', /malformed/],
    [500011, 'invalid_resource', /Office 365 Exchange Online/],
    [50126, 'invalid_grant', /Wrong username or password/],
    [50034, 'invalid_grant', /does not exist in this organisation/],
    [null, 'interaction_required', /sign in interactively/],
    [null, 'temporarily_unavailable', /temporarily unavailable.*retries automatically/],
  ];
  for (const [code, oauthError, says] of table) {
    it(`explains ${code === null ? oauthError : `AADSTS${code}`}`, () => assert.match(explainAadsts(code, oauthError), says));
  }

  it('names the exact redirect URI when it is known', () => {
    assert.match(
      explainAadsts(50011, 'invalid_request', { redirectUri: 'https://mail.example.com/microsoft_outlook/confirm' }),
      /add exactly https:\/\/mail\.example\.com\/microsoft_outlook\/confirm as a Web redirect URI/,
    );
  });

  it('falls back to quoting Microsoft with a link to the code', () => {
    const { explanation, action } = explainOAuthError(7654321, 'invalid_request', { description: 'The widget\r\nis frobnicated.' });
    assert.equal(explanation, 'Microsoft refused the request (invalid_request, AADSTS7654321): "The widget is frobnicated."');
    assert.match(action, /https:\/\/login\.microsoftonline\.com\/error\?code=7654321/);
  });

  it('falls back without a code or description', () => {
    assert.equal(explainOAuthError(null, 'weird_error').explanation, 'Microsoft refused the request (weird_error).');
  });
});

describe('humanOAuthMessage', () => {
  const details = (over: Partial<OAuthErrorDetails>): OAuthErrorDetails => ({
    oauthError: null,
    aadsts: null,
    description: null,
    traceId: null,
    correlationId: null,
    httpStatus: null,
    errorClass: 'transient',
    transient: true,
    ...over,
  });

  it('names the server and keeps Microsoft\'s facts', () => {
    const msg = humanOAuthMessage(details({ oauthError: 'invalid_grant', aadsts: 700082, httpStatus: 400, errorClass: 'server', transient: false }), { serverName: 'Sales\r\nbox' });
    assert.match(msg, /^Outlook server "Sales box": The refresh token expired/);
    assert.match(msg, /\(Microsoft: invalid_grant, AADSTS700082\)$/);
  });

  it('says a network failure is retried', () => {
    assert.equal(
      humanOAuthMessage(details({ description: 'login.microsoftonline.com: ECONNREFUSED' })),
      "Could not get a token from Microsoft's sign-in service (login.microsoftonline.com: ECONNREFUSED); Juniper retries automatically.",
    );
  });

  it('says what Juniper could not do when the request could not be made', () => {
    assert.equal(
      humanOAuthMessage(details({ description: 'the Outlook endpoint must use https://', errorClass: 'app', transient: false })),
      'Cannot get a token from Microsoft: the Outlook endpoint must use https://.',
    );
  });
});

describe('oauthFailure', () => {
  it('builds JUNIPER_ERR_OAUTH with the classified details', () => {
    const err = oauthFailure({ ...parseMicrosoftError(entraBody('invalid_client', 7000222, 'The provided client secret keys are expired.')), httpStatus: 401 });
    assert.ok(isAppError(err));
    assert.equal(err.code, 'JUNIPER_ERR_OAUTH');
    assert.equal(err.status, 502);
    assert.deepEqual(err.details, {
      oauthError: 'invalid_client',
      aadsts: 7000222,
      description: 'The provided client secret keys are expired.',
      traceId: TRACE,
      correlationId: CORRELATION,
      httpStatus: 401,
      errorClass: 'app',
      transient: false,
    });
    assert.match(err.message, /client secret has expired/);
  });

  it('lets the caller overrule the classification', () => {
    const err = oauthFailure({ httpStatus: null, description: 'no refresh token is stored' }, { errorClass: 'server' });
    assert.equal(err.details?.errorClass, 'server');
    assert.equal(err.details?.transient, false);
  });

  it('gives typed details back from a JUNIPER_ERR_OAUTH, and nothing from other errors', () => {
    const err = oauthFailure({ httpStatus: 400, oauthError: 'invalid_grant', aadsts: 700082 });
    assert.equal(oauthErrorDetails(err)?.aadsts, 700082);
    assert.equal(oauthErrorDetails(new AppError('JUNIPER_ERR_VALIDATION', 'x', { details: { aadsts: 1 } })), undefined);
    assert.equal(oauthErrorDetails(new Error('x')), undefined);
  });
});
