import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { messageBytes, SEND_DEADLINE_MIN_MS, sendDeadlineMs } from './send-deadline.js';
import type { OutgoingMessage } from './mail-transport.js';

describe('sendDeadlineMs: max(minimum, size at the slowest expected rate)', () => {
  const table: [string, number, number][] = [
    ['an empty mail gets the minimum', 0, SEND_DEADLINE_MIN_MS],
    ['a 1 MB mail still the minimum (20 s at 50 KB/s)', 1_048_576, SEND_DEADLINE_MIN_MS],
    ['6 MB is the break-even point', 6_144_000, SEND_DEADLINE_MIN_MS],
    ['a 25 MB mail gets 500 s', 25 * 1024 * 1024, 512_000],
  ];
  for (const [name, bytes, ms] of table) it(name, () => assert.equal(sendDeadlineMs(bytes), ms));
  it('tests may set both constants small', () => assert.equal(sendDeadlineMs(10_000, { minMs: 100, bytesPerSecond: 1000 }), 10_000));
});

describe('messageBytes: about what the message takes on the wire', () => {
  const base: OutgoingMessage = { messageId: '<a@b>', from: 'a@b', to: ['c@d'], cc: [], bcc: [], subject: 's', attachments: [] };
  it('a raw message is its length', () => assert.equal(messageBytes({ ...base, raw: Buffer.alloc(5000) }), 5000));
  it('attachments count base64-encoded, bodies as they are', () => {
    const bytes = messageBytes({ ...base, text: 'héllo', html: '<p>x</p>', attachments: [{ filename: 'a', contentType: 'x/y', content: Buffer.alloc(3000) }, { filename: 'b', contentType: 'x/y', content: { size: 300, pieces: async function* () {} } }] });
    assert.equal(bytes, 6 + 8 + 4400);
  });
});
