import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { batches, batchesAfterFailure, cursorStart, newStartUid, type CursorStart, type StoredCursor } from './fetch-plan.js';
import { uidSet } from './mailbox-reader.js';

describe('UID sets, batches and cursor starts', () => {
  it('writes ascending UIDs as compact IMAP sequence sets', () => {
    const cases: [number[], string][] = [
      [[], ''],
      [[7], '7'],
      [[1, 2, 3], '1:3'],
      [[1, 2, 3, 7, 9, 10], '1:3,7,9:10'],
      [[10, 9, 1, 9], '1,9:10'],
      [[4294967294, 4294967295], '4294967294:4294967295'],
    ];
    for (const [uids, set] of cases) assert.equal(uidSet(uids), set, JSON.stringify(uids));
  });

  it('cuts batches by count and by bytes, and a message larger than the byte budget goes alone', () => {
    const m = (uid: number, size = 10) => ({ uid, size });
    const uids = (b: ReturnType<typeof batches>) => b.map((x) => x.uids);
    assert.deepEqual(batches([], 50, 1000), []);
    assert.deepEqual(uids(batches([m(1), m(2), m(3), m(4), m(5)], 2, 1000)), [[1, 2], [3, 4], [5]]);
    assert.deepEqual(uids(batches([m(1, 400), m(2, 400), m(3, 400)], 50, 1000)), [[1, 2], [3]]);
    assert.deepEqual(uids(batches([m(1, 10), m(2, 5000), m(3, 10)], 50, 1000)), [[1], [2], [3]]);
  });

  it('puts messages over the size cap into header-only batches of their own, in UID order', () => {
    const m = (uid: number, size = 10) => ({ uid, size });
    const cases: [ReturnType<typeof m>[], number, [number[], boolean][]][] = [
      [[m(1), m(2, 101), m(3)], 100, [[[1], false], [[2], true], [[3], false]]],
      [[m(1, 101), m(2, 5000), m(3, 102), m(4)], 100, [[[1, 2], true], [[3], true], [[4], false]]],
      [[m(1, 100), m(2, 100)], 100, [[[1, 2], false]]],
      [[m(1, 5000)], Infinity, [[[1], false]]],
    ];
    for (const [pending, cap, expected] of cases) {
      assert.deepEqual(batches(pending, 2, 10_000, cap).map((b) => [b.uids, b.oversize]), expected, JSON.stringify({ pending, cap }));
    }
  });

  it('starts the cursor from the stored one, or like a first fetch after a UIDVALIDITY change', () => {
    const c = (uidvalidity: number | null, lastUid: number | null, seenUid: number | null): StoredCursor => ({ uidvalidity, lastUid, seenUid });
    const cases: [StoredCursor, number, CursorStart][] = [
      [c(null, null, null), 7, { kind: 'first' }],
      [c(7, 40, 40), 7, { kind: 'continue', lastUid: 40, seenUid: 40 }],
      [c(7, 40, 30), 7, { kind: 'continue', lastUid: 40, seenUid: 30 }],
      [c(7, 40, null), 7, { kind: 'continue', lastUid: 40, seenUid: 40 }],
      [c(7, 40, 50), 7, { kind: 'continue', lastUid: 40, seenUid: 40 }],
      [c(7, null, null), 7, { kind: 'reset' }],
      [c(7, 40, 40), 8, { kind: 'reset' }],
    ];
    for (const [cursor, uidValidity, start] of cases) assert.deepEqual(cursorStart(cursor, uidValidity), start, JSON.stringify({ cursor, uidValidity }));
    assert.equal(newStartUid(5, 100), 4, 'just below the oldest unseen message');
    assert.equal(newStartUid(undefined, 100), 99, 'everything read: only what arrives from now on');
    assert.equal(newStartUid(undefined, 1), 0, 'an empty new folder');
    assert.equal(newStartUid(1, 2), 0);
  });

  it('after a FETCH that never finished, fetches its messages one at a time and the rest in batches as usual', () => {
    const m = (uid: number, size = 10) => ({ uid, size });
    const pending = [m(4), m(5), m(6, 5000), m(7), m(8), m(9), m(10)];
    assert.deepEqual(batchesAfterFailure(pending, null, 3, 1000), batches(pending, 3, 1000), 'no failed FETCH: the usual batches');
    assert.deepEqual(batchesAfterFailure(pending, 7, 3, 1000, 1000), [
      { uids: [4], oversize: false },
      { uids: [5], oversize: false },
      { uids: [6], oversize: true },
      { uids: [7], oversize: false },
      { uids: [8, 9, 10], oversize: false },
    ]);
    assert.deepEqual(batchesAfterFailure(pending, 3, 3, 1000), batches(pending, 3, 1000), 'the run got past the failed FETCH already');
    assert.deepEqual(batchesAfterFailure([], 7, 3, 1000), []);
  });
});
