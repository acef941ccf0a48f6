import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_IMAP_TIMEOUTS, imapClientOptions, lowest, parserLimits } from './imap-reader.js';

const endpoint = { serverId: 1, name: 'box', host: 'imap.example.com', port: 993, security: 'ssl' as const, allowSelfSigned: false };
const credentials = { kind: 'password' as const, user: 'u', pass: 'p' };

describe('imapClientOptions: the IMAP parser is bounded by the incoming size cap', () => {
  it('a fetch passes the cap: literals and responses beyond it (plus framing) are refused by the parser', () => {
    const o = imapClientOptions({ ...endpoint, maxMessageBytes: 40 * 1024 * 1024 }, credentials, DEFAULT_IMAP_TIMEOUTS) as { maxLiteralSize?: number; maxResponseSize?: number };
    assert.deepEqual({ maxLiteralSize: o.maxLiteralSize, maxResponseSize: o.maxResponseSize }, parserLimits(40 * 1024 * 1024));
    assert.ok(o.maxLiteralSize! > 40 * 1024 * 1024 && o.maxLiteralSize! < 50 * 1024 * 1024, 'room for a message of exactly the cap, not for gigabytes');
    assert.ok(o.maxResponseSize! > o.maxLiteralSize!, 'imapflow needs the response limit above the literal limit');
  });
  it("a low cap does not shrink the room for a SEARCH of a large mailbox (half a million UIDs), only for a message", () => {
    const limits = parserLimits(1024);
    assert.ok(limits.maxLiteralSize < 2 * 1024 * 1024, 'a message is still held to the cap (plus framing)');
    const search = `* SEARCH ${Array.from({ length: 500_000 }, (_, i) => 1_000_000 + i).join(' ')}\r\n`;
    assert.ok(limits.maxResponseSize > search.length, `a SEARCH of ${search.length} bytes fits`);
    assert.ok(parserLimits(40 * 1024 * 1024).maxResponseSize > 40 * 1024 * 1024, 'a large cap keeps its own room');
  });
  it('without a cap (Test & Confirm reads no message) the limits are 1 MB literals and 2 MB responses, not imapflow\'s 1 GB and 2 GB', () => {
    const o = imapClientOptions(endpoint, credentials, DEFAULT_IMAP_TIMEOUTS) as { maxLiteralSize?: number; maxResponseSize?: number };
    assert.deepEqual({ maxLiteralSize: o.maxLiteralSize, maxResponseSize: o.maxResponseSize }, { maxLiteralSize: 1024 * 1024, maxResponseSize: 2 * 1024 * 1024 });
  });
});

describe('lowest: the first unseen UID of a big mailbox', () => {
  it('is the minimum of 200,000 UIDs (Math.min(...uids) throws a RangeError there)', () => {
    const uids = Array.from({ length: 200_000 }, (_, i) => 300_000 - i);
    assert.equal(lowest(uids), 100_001);
    assert.equal(lowest([]), undefined);
    assert.equal(lowest([5, 3, 9]), 3);
  });
});
