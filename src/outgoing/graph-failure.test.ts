import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppError } from '../lib/errors.js';
import { classifySendError } from './delivery-failure.js';
import type { DeliveryAction, FailureType } from './delivery-failure.js';
import { GraphRequestError } from './graph-failure.js';
import { retryAfterMs } from './graph-transport.js';

const MAILBOX = 'sales@example.com';
const URL_ME = 'https://graph.microsoft.com/v1.0/me/sendMail';

function answered(status: number, code?: string, message?: string, extra: Partial<GraphRequestError['facts']> = {}): GraphRequestError {
  return new GraphRequestError(`Microsoft Graph answered ${status}`, { status, ...(code ? { code } : {}), ...(message ? { graphMessage: message } : {}), mailbox: MAILBOX, url: URL_ME, ...extra });
}

const cases: { name: string; err: unknown; action: DeliveryAction; failureType: FailureType; reason: RegExp; retryAfterMs?: number }[] = [
  { name: '429 with Retry-After waits that long', err: answered(429, 'ApplicationThrottled', 'over its limit', { retryAfterMs: 12_000 }), action: 'retry', failureType: 'quota', reason: /ApplicationThrottled: over its limit.*retried in 12 s/, retryAfterMs: 12_000 },
  { name: '429 without Retry-After waits a minute', err: answered(429, 'TooManyRequests'), action: 'retry', failureType: 'quota', reason: /retried in 60 s/, retryAfterMs: 60_000 },
  { name: 'a Retry-After over an hour is held to an hour', err: answered(429, undefined, undefined, { retryAfterMs: 5 * 3600_000 }), action: 'retry', failureType: 'quota', reason: /retried in 3600 s/, retryAfterMs: 3600_000 },
  { name: 'a daily sending limit is throttling, not a refusal', err: answered(403, 'ErrorQuotaExceeded', 'quota'), action: 'retry', failureType: 'quota', reason: /ErrorQuotaExceeded/, retryAfterMs: 60_000 },
  { name: '503 is transient', err: answered(503, 'ServiceUnavailable'), action: 'retry', failureType: 'graph_temporary', reason: /503 \(ServiceUnavailable\).*retried later/ },
  { name: '500 is transient', err: answered(500), action: 'retry', failureType: 'graph_temporary', reason: /answered 500/ },
  { name: '401 after a fresh token waits for a reconnect', err: answered(401, 'InvalidAuthenticationToken'), action: 'wait', failureType: 'oauth_token', reason: /reconnect the Outlook account.*Mail\.Send/ },
  { name: 'ErrorSendAsDenied fails and explains Send As', err: answered(403, 'ErrorSendAsDenied', 'not allowed', { sendAs: 'orders@example.com' }), action: 'fail', failureType: 'sender_refused', reason: /grant sales@example\.com Send As \(or Full Access\) on orders@example\.com.*Mail\.Send\.Shared/ },
  { name: 'a 404 for another mailbox is a refused sender', err: answered(404, 'ErrorInvalidUser', 'no such user', { sendAs: 'ghost@example.com' }), action: 'fail', failureType: 'sender_refused', reason: /ghost@example\.com/ },
  { name: 'ErrorAccessDenied waits: consent or licence to fix', err: answered(403, 'ErrorAccessDenied', 'Access is denied.'), action: 'wait', failureType: 'auth', reason: /Mail\.Send.*reconnect/ },
  { name: 'a mailbox not on Exchange Online waits', err: answered(404, 'MailboxNotEnabledForRESTAPI', 'REST API is not yet supported for this mailbox.'), action: 'wait', failureType: 'auth', reason: /Exchange Online mailbox/ },
  { name: 'ErrorAccessDenied on a send-as waits too, naming Mail.Send.Shared', err: answered(403, 'ErrorAccessDenied', 'Access is denied.', { sendAs: 'orders@example.com' }), action: 'wait', failureType: 'auth', reason: /as orders@example\.com.*Mail\.Send\.Shared/ },
  { name: 'a 408 is a timeout, retried', err: answered(408, 'RequestTimeout'), action: 'retry', failureType: 'timeout', reason: /408/ },
  { name: 'a mailbox blocked for spam waits, saying where to release it', err: answered(403, 'ErrorMessageSubmissionBlocked', 'blocked'), action: 'wait', failureType: 'auth', reason: /Restricted entities/ },
  { name: '413 is too large', err: answered(413, 'RequestEntityTooLarge'), action: 'fail', failureType: 'too_large', reason: /too large/ },
  { name: 'invalid recipients fail as addresses', err: answered(400, 'ErrorInvalidRecipients', 'At least one recipient is not valid.'), action: 'fail', failureType: 'invalid_address', reason: /ErrorInvalidRecipients: At least one recipient is not valid/ },
  { name: 'another 400 fails with Graph\'s words', err: answered(400, 'ErrorMimeContentInvalid', 'bad MIME'), action: 'fail', failureType: 'rejected', reason: /ErrorMimeContentInvalid: bad MIME/ },
  { name: 'over the request limit before sending', err: new GraphRequestError('x', { status: 0, code: 'JuniperMessageTooLarge', tooLarge: { bytes: 3_300_000 }, mailbox: MAILBOX, url: URL_ME }), action: 'fail', failureType: 'too_large', reason: /3\.1 MB as MIME, 4\.2 MB once encoded.*at most 4 MB/ },
  { name: 'no answer in time is a timeout, retried', err: new GraphRequestError('Microsoft Graph did not answer within 60 s', { status: 0, timedOut: true, mailbox: MAILBOX, url: URL_ME }), action: 'retry', failureType: 'timeout', reason: /may arrive twice/ },
  { name: 'unreachable is a connection problem, retried', err: new GraphRequestError('Microsoft Graph could not be reached (ECONNREFUSED)', { status: 0, network: 'ECONNREFUSED', mailbox: MAILBOX, url: URL_ME }), action: 'retry', failureType: 'connection', reason: /ECONNREFUSED.*graph_endpoint/ },
  { name: 'a raw message Graph would deliver to other recipients fails', err: new AppError('JUNIPER_ERR_VALIDATION', 'queued for other recipients', { details: { graphUnsendable: true } }), action: 'fail', failureType: 'rejected', reason: /other recipients/ },
];

describe('classifySendError for Microsoft Graph', () => {
  for (const c of cases) {
    it(c.name, () => {
      const d = classifySendError(c.err, { auth: 'outlook' });
      assert.equal(d.action, c.action);
      assert.equal(d.failureType, c.failureType);
      assert.match(d.reason, c.reason);
      assert.equal(d.retryAfterMs, c.retryAfterMs);
    });
  }
});

describe('retryAfterMs', () => {
  it('reads seconds and HTTP dates, and nothing else', () => {
    assert.equal(retryAfterMs('17'), 17_000);
    assert.equal(retryAfterMs(' 3 '), 3_000);
    assert.equal(retryAfterMs(new Date(Date.UTC(2026, 0, 1, 0, 0, 30)).toUTCString(), Date.UTC(2026, 0, 1)), 30_000);
    assert.equal(retryAfterMs(new Date(Date.UTC(2025, 0, 1)).toUTCString(), Date.UTC(2026, 0, 1)), 0, 'a date gone by: at once');
    assert.equal(retryAfterMs('soon'), undefined);
    assert.equal(retryAfterMs(null), undefined);
  });
});
