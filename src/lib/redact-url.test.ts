import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { redactUrl } from './redact-url.js';

describe('redactUrl', () => {
  const cases: Array<[string, string]> = [
    ['/healthz', '/healthz'],
    ['/setup?token=abc123', '/setup?token=[redacted]'],
    ['/microsoft_outlook/confirm?code=SECRET&state=S2&x=1', '/microsoft_outlook/confirm?code=[redacted]&state=[redacted]&x=1'],
    ['/api/v1/mails?state=queued', '/api/v1/mails?state=[redacted]'],
    // A signed-out browser back from Microsoft: the callback, with its code, rides in next (encoded or not).
    [`/login?next=${encodeURIComponent('/microsoft_outlook/confirm?code=THE-CODE&state=THE-STATE')}`, '/login?next=/microsoft_outlook/confirm?code=[redacted]&state=[redacted]'],
    ['/login?next=/microsoft_outlook/confirm?code=THE-CODE&state=THE-STATE', '/login?next=/microsoft_outlook/confirm?code=[redacted]&state=[redacted]'],
    [`/login?next=${encodeURIComponent(`/a?next=${encodeURIComponent(`/b?next=${encodeURIComponent('/c?code=X')}`)}`)}`, '/login?next=/a?next=/b?next=[redacted]'],
  ];
  for (const [input, expected] of cases) {
    it(`keeps secrets of ${input.split('?')[0]} out of logs`, () => assert.equal(redactUrl(input), expected));
  }
});
