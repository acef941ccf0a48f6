import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isWarningDay, secretExpiryWarning } from './secret-expiry.js';

describe('client secret expiry warnings', () => {
  const table: [number | null, string | null, boolean][] = [
    [null, null, false],
    [90, null, false],
    [31, null, false],
    [30, 'notice', true],
    [20, 'notice', false],
    [14, 'warning', true],
    [8, 'warning', false],
    [7, 'critical', true],
    [1, 'critical', true],
    [0, 'critical', true],
    [-3, 'critical', true],
  ];
  for (const [days, level, logDay] of table) {
    it(`${String(days)} days left → ${String(level)}${logDay ? ', logged today' : ''}`, () => {
      assert.equal(secretExpiryWarning(days)?.level ?? null, level);
      assert.equal(isWarningDay(days), logDay);
    });
  }
  it('says what to do and how long is left', () => {
    assert.match(secretExpiryWarning(7)!.message, /expires in 7 day\(s\).*Certificates & secrets/);
    assert.match(secretExpiryWarning(-2)!.message, /expired 2 day\(s\) ago/);
  });
});
