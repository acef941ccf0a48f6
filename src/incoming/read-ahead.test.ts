import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readAhead } from './read-ahead.js';

/** A source that records how far it was read and can fail after some items. */
function source(n: number, failAfter?: number) {
  const log = { produced: 0, maxAhead: 0, consumed: 0 };
  async function* gen() {
    for (let i = 0; i < n; i++) {
      if (i === failAfter) throw new Error('connection lost');
      await new Promise((r) => setImmediate(r));
      log.produced++;
      log.maxAhead = Math.max(log.maxAhead, log.produced - log.consumed);
      yield { i, bytes: 10 };
    }
  }
  return { gen, log };
}

describe('read ahead', () => {
  it('yields every item in order, reading ahead no further than the item bound or the byte bound', async () => {
    const cases: [number, number, number][] = [
      // items, maxItems, maxBytes → ahead at most min(maxItems, ceil(maxBytes / 10)) (+1 in the producer's hand)
      [20, 3, 1_000],
      [20, 100, 25],
      [5, 1, 1],
    ];
    for (const [n, maxItems, maxBytes] of cases) {
      const { gen, log } = source(n);
      const seen: number[] = [];
      for await (const item of readAhead(gen(), (x) => x.bytes, maxItems, maxBytes)) {
        log.consumed++;
        seen.push(item.i);
        await new Promise((r) => setTimeout(r, 1));
      }
      assert.deepEqual(seen, Array.from({ length: n }, (_, i) => i));
      const bound = Math.min(maxItems, Math.ceil(maxBytes / 10)) + 1;
      assert.ok(log.maxAhead <= bound, `${JSON.stringify({ n, maxItems, maxBytes })}: ${log.maxAhead} ahead, bound ${bound}`);
    }
  });

  it('gives what arrived before a failure, then the failure', async () => {
    const { gen } = source(10, 4);
    const seen: number[] = [];
    await assert.rejects(async () => {
      for await (const item of readAhead(gen(), (x) => x.bytes, 100, 1_000)) seen.push(item.i);
    }, /connection lost/);
    assert.deepEqual(seen, [0, 1, 2, 3]);
  });

  it('reads the source to its end when the consumer stops early, before it returns', async () => {
    const { gen, log } = source(10);
    for await (const item of readAhead(gen(), (x) => x.bytes, 2, 1_000)) if (item.i === 1) break;
    assert.equal(log.produced, 10, 'the source (a FETCH) ended before the caller goes on');
  });
});
