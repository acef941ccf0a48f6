import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SendSlots } from './send-slots.js';

/** Lets every settled promise's callbacks run. */
const flush = () => new Promise((r) => setImmediate(r));

describe('SendSlots: per server, at most its limit of sends at once, the rest in turn', () => {
  it('admits up to the limit, then one waiter per slot given back, first come first served', async () => {
    const slots = new SendSlots();
    const order: number[] = [];
    const frees: (() => void)[] = [];
    for (let i = 0; i < 5; i++) void slots.acquire(7, 2).then((free) => { order.push(i); frees[i] = free; });
    await flush();
    assert.deepEqual(order, [0, 1]);
    assert.deepEqual(slots.usage(7), { running: 2, waiting: 3 });
    frees[1]!();
    await flush();
    assert.deepEqual(order, [0, 1, 2]);
    frees[1]!(); // a second call gives nothing back
    await flush();
    assert.deepEqual(slots.usage(7), { running: 2, waiting: 2 });
    frees[0]!();
    frees[2]!();
    await flush();
    assert.deepEqual(order, [0, 1, 2, 3, 4]);
    frees[3]!();
    frees[4]!();
    assert.deepEqual(slots.usage(7), { running: 0, waiting: 0 });
  });

  it('a waiter whose signal aborts leaves the line with the reason; the others keep their turn', async () => {
    const slots = new SendSlots();
    const free = await slots.acquire(4, 1);
    const cancel = new AbortController();
    const reason = new Error('given back');
    const cancelled = slots.acquire(4, 1, cancel.signal);
    let next = false;
    void slots.acquire(4, 1).then(() => (next = true));
    cancel.abort(reason);
    await assert.rejects(cancelled, (err) => err === reason);
    assert.deepEqual(slots.usage(4), { running: 1, waiting: 1 });
    free();
    await flush();
    assert.equal(next, true, 'the slot went to the next waiter, not the one that left');
  });

  it('servers do not share slots', async () => {
    const slots = new SendSlots();
    await slots.acquire(1, 1);
    let other = false;
    void slots.acquire(2, 1).then(() => (other = true));
    await flush();
    assert.equal(other, true);
    assert.deepEqual(slots.usage(1), { running: 1, waiting: 0 });
  });

  it('a raised limit admits waiters at once; a lowered one lets the sends under way finish', async () => {
    const slots = new SendSlots();
    const free = await slots.acquire(3, 1);
    let admitted = 0;
    void slots.acquire(3, 1).then(() => admitted++);
    await flush();
    assert.equal(admitted, 0);
    void slots.acquire(3, 3).then(() => admitted++);
    await flush();
    assert.equal(admitted, 2);
    void slots.acquire(3, 1).then(() => admitted++);
    free();
    await flush();
    assert.equal(admitted, 2, 'two still run over a limit of one');
    assert.deepEqual(slots.usage(3), { running: 2, waiting: 1 });
  });
});
