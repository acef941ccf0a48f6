import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_ATTEMPTS, MAX_DELAY_MS, retryDelayMs, shouldGiveUp } from './backoff.js';

const S = 1000;
const MIN = 60 * S;
const H = 60 * MIN;
const nominal = (): number => 0.5;
const lowest = (): number => 0;
const highest = (): number => 1;

describe('retryDelayMs', () => {
  const schedule: Array<[attempt: number, delay: number]> = [
    [1, 30 * S],
    [2, 2 * MIN],
    [3, 8 * MIN],
    [4, 32 * MIN],
    [5, 128 * MIN],
    [6, 512 * MIN],
    [7, 12 * H],
    [8, 12 * H],
    [20, 12 * H],
  ];
  for (const [attempt, delay] of schedule) {
    it(`waits ${delay / S} s after attempt ${attempt} (no jitter)`, () => assert.equal(retryDelayMs(attempt, nominal), delay));
  }

  it('varies each wait by at most ±20%', () => {
    for (const [attempt, delay] of schedule) {
      assert.equal(retryDelayMs(attempt, lowest), Math.round(delay * 0.8));
      assert.equal(retryDelayMs(attempt, highest), Math.round(delay * 1.2));
    }
  });

  it('treats attempt 0 or less as the first', () => {
    assert.equal(retryDelayMs(0, nominal), 30 * S);
    assert.equal(retryDelayMs(-3, nominal), 30 * S);
  });

  it('never exceeds the cap plus jitter, even for absurd attempt counts', () => {
    assert.equal(retryDelayMs(1e6, highest), Math.round(MAX_DELAY_MS * 1.2));
  });

  it('spans about a day from the first failure to the last attempt', () => {
    let elapsed = 0;
    for (let attempt = 1; attempt < MAX_ATTEMPTS; attempt++) elapsed += retryDelayMs(attempt, nominal);
    assert.equal(elapsed, 23 * H + 22 * MIN + 30 * S);
  });
});

describe('shouldGiveUp', () => {
  const table: Array<[attempts: number, giveUp: boolean]> = [
    [0, false],
    [1, false],
    [MAX_ATTEMPTS - 1, false],
    [MAX_ATTEMPTS, true],
    [MAX_ATTEMPTS + 1, true],
  ];
  for (const [attempts, giveUp] of table) {
    it(`${giveUp ? 'gives up' : 'retries'} after ${attempts} attempts`, () => assert.equal(shouldGiveUp(attempts), giveUp));
  }
});
