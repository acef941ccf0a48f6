import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { batches } from './fetcher.js';
import { uidSet } from './mailbox-reader.js';

describe('UID sets and batches', () => {
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
    assert.deepEqual(batches([], 50, 1000), []);
    assert.deepEqual(batches([m(1), m(2), m(3), m(4), m(5)], 2, 1000), [[1, 2], [3, 4], [5]]);
    assert.deepEqual(batches([m(1, 400), m(2, 400), m(3, 400)], 50, 1000), [[1, 2], [3]]);
    assert.deepEqual(batches([m(1, 10), m(2, 5000), m(3, 10)], 50, 1000), [[1], [2], [3]]);
  });
});
