import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KEEP_ALIVE_MS, keepAliveDue, REFRESH_MARGIN_MS, tokenNeedsRefresh } from './token-freshness.js';

const NOW = Date.UTC(2025, 2, 14, 9, 0, 0);
const MIN = 60_000;
const H = 60 * MIN;

describe('tokenNeedsRefresh', () => {
  const table: Array<[name: string, expiresAt: number | null, hasAccessToken: boolean, renew: boolean, expected: boolean]> = [
    ['a fresh token is reused', NOW + H, true, false, false],
    ['a token with just over the margin left is reused', NOW + REFRESH_MARGIN_MS + 1, true, false, false],
    ['a token exactly at the margin is refreshed', NOW + REFRESH_MARGIN_MS, true, false, true],
    ['a token within the margin is refreshed', NOW + 4 * MIN, true, false, true],
    ['an expired token is refreshed', NOW - MIN, true, false, true],
    ['no access token: refresh', NOW + H, false, false, true],
    ['no expiry known: refresh', null, true, false, true],
    ['a nonsense expiry: refresh', Number.NaN, true, false, true],
    ['renew after the mail server refused a fresh token', NOW + H, true, true, true],
  ];
  for (const [name, expiresAt, hasAccessToken, renew, expected] of table) {
    it(name, () => assert.equal(tokenNeedsRefresh({ expiresAt, hasAccessToken }, NOW, renew), expected));
  }

  it('does not renew unless asked', () => assert.equal(tokenNeedsRefresh({ expiresAt: NOW + H, hasAccessToken: true }, NOW), false));

  it('uses a five-minute margin', () => assert.equal(REFRESH_MARGIN_MS, 5 * MIN));
});

describe('keepAliveDue', () => {
  const table: Array<[name: string, refreshedAt: number | null, expected: boolean]> = [
    ['never refreshed: due', null, true],
    ['refreshed an hour ago: not due', NOW - H, false],
    ['refreshed just under a day ago: not due', NOW - KEEP_ALIVE_MS + 1, false],
    ['refreshed exactly a day ago: due', NOW - KEEP_ALIVE_MS, true],
    ['refreshed a week ago: due', NOW - 7 * 24 * H, true],
    ['a refreshed_at slightly ahead (another worker\'s clock): not due', NOW + 5_000, false],
    ['a nonsense refreshed_at: due', Number.NaN, true],
  ];
  for (const [name, refreshedAt, expected] of table) {
    it(name, () => assert.equal(keepAliveDue(refreshedAt, NOW), expected));
  }

  it('keeps a day between keep-alives, far inside the 90-day inactivity limit', () => assert.equal(KEEP_ALIVE_MS, 24 * H));
});
