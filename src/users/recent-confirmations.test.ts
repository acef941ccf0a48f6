import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CONFIRMATION_MS, RecentConfirmations } from './recent-confirmations.js';

describe('RecentConfirmations: an admin session confirmed lately', () => {
  it('holds for CONFIRMATION_MS after the password was typed, for that session only, and then asks again', () => {
    let now = 1_000_000;
    const recent = new RecentConfirmations(() => now);
    assert.equal(recent.confirmedUntil('s1'), undefined);
    assert.equal(recent.confirm('s1'), now + CONFIRMATION_MS);
    assert.equal(recent.confirmedUntil('s1'), now + CONFIRMATION_MS);
    assert.equal(recent.confirmedUntil('s2'), undefined, 'another session is not confirmed by it');
    now += CONFIRMATION_MS - 1;
    assert.ok(recent.confirmedUntil('s1'));
    now += 1;
    assert.equal(recent.confirmedUntil('s1'), undefined, 'ran out');
    recent.confirm('s1');
    assert.ok(recent.confirmedUntil('s1'), 'confirmed again');
  });
});
