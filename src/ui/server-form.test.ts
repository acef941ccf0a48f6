import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TokenView } from '../outgoing/servers.js';
import { reconnectNote, tokenBlocker } from './server-form.js';

const stored =
  'Microsoft found the request malformed, or the stored token unusable. Click Connect your Outlook account on this server again. If it persists, check that microsoft_outlook.endpoint ends with /oauth2/v2.0/. (Microsoft: invalid_grant, AADSTS9002313)';

describe('reconnectNote says the code and the action once', () => {
  const cases: [string, { code: string | null; message: string }, string][] = [
    ['Juniper explanation with its action and code', { code: 'AADSTS9002313', message: stored }, stored],
    ['a message without code or action', { code: 'no_refresh_token', message: 'Microsoft returned no refresh token.' }, 'Microsoft returned no refresh token. (no_refresh_token) Click Connect your Outlook account to sign in again.'],
    ['a message saying connect again, no code', { code: null, message: 'The offline_access permission is missing. Add it and connect again.' }, 'The offline_access permission is missing. Add it and connect again.'],
  ];
  for (const [name, error, expected] of cases) it(name, () => assert.equal(reconnectNote(error), expected));
});

describe('tokenBlocker ranks a token problem above a passed test', () => {
  const token = (over: Partial<TokenView>): TokenView => ({ status: 'valid', account: null, expiresAt: null, error: null, appProblem: null, ...over });
  const cases: [string, { auth: string; token: TokenView }, string | null][] = [
    ['password server', { auth: 'password', token: token({ status: 'missing' }) }, null],
    ['valid token', { auth: 'outlook', token: token({}) }, null],
    ['needs reconnect', { auth: 'outlook', token: token({ status: 'needs_reconnect' }) }, 'Reconnect needed'],
    ['never connected', { auth: 'outlook', token: token({ status: 'missing' }) }, 'Not connected yet'],
    ['app problem first', { auth: 'outlook', token: token({ status: 'needs_reconnect', appProblem: { code: 'AADSTS7000222', message: 'expired' } }) }, 'Outlook app credentials need attention'],
  ];
  for (const [name, s, expected] of cases) it(name, () => assert.equal(tokenBlocker(s), expected));
});
