import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { roundBackoffMs } from './dispatcher.js';

describe('roundBackoffMs: the pause after failed dispatcher rounds in a row', () => {
  const table: [number, number][] = [[1, 1000], [2, 2000], [3, 4000], [5, 16_000], [6, 30_000], [50, 30_000]];
  for (const [failures, ms] of table) it(`${failures} failure(s) → ${ms} ms`, () => assert.equal(roundBackoffMs(failures, 1000), ms));
  it('never exceeds 30 s whatever the poll interval', () => assert.equal(roundBackoffMs(3, 60_000), 30_000));
});
