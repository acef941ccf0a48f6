import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { admits, excessOf, isStalled } from './server-stall.js';

describe('server-stall: a server none of whose sends settled for stallMs keeps only `cap` of them', () => {
  const now = 100_000;
  const table: { name: string; inFlight: number; idleMs: number; stalled: boolean; admits: boolean; excess: number }[] = [
    { name: 'nothing under way is never stalled', inFlight: 0, idleMs: 60_000, stalled: false, admits: true, excess: 0 },
    { name: 'a busy server that settles sends is not capped', inFlight: 40, idleMs: 500, stalled: false, admits: true, excess: 0 },
    { name: 'stalled under its cap still admits', inFlight: 3, idleMs: 30_000, stalled: true, admits: true, excess: 0 },
    { name: 'stalled at its cap admits no more', inFlight: 4, idleMs: 30_000, stalled: true, admits: false, excess: 0 },
    { name: 'stalled over its cap gives back the excess', inFlight: 30, idleMs: 45_000, stalled: true, admits: false, excess: 26 },
  ];
  for (const c of table) {
    it(c.name, () => {
      const s = { inFlight: c.inFlight, progressAt: now - c.idleMs };
      assert.equal(isStalled(s, now, 30_000), c.stalled);
      assert.equal(admits(s, 4, now, 30_000), c.admits);
      assert.equal(excessOf(s, 4, now, 30_000), c.excess);
    });
  }
});
