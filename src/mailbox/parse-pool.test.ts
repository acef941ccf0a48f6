import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { corpusMessage, type CorpusMessage } from '../../test/helpers/incoming.js';
import { crashedReason, defaultParseWorkers, overBudgetReason, PARSE_CRASHES_TOLERATED, ParsePool, setSharedParseWorkers, sharedParsePool, sharedParseWorkers, WORKER_PARSE_MAX_BYTES } from './parse-pool.js';
import { parseMessage } from './parse.js';
import { projectRoot } from '../../test/helpers/project-root.js';

const fixtures = path.join(projectRoot, 'test/fixtures/incoming');
const KINDS: CorpusMessage['kind'][] = ['plain', 'alternative', 'attachment', 'latin1', 'shift_jis', 'cp1252', 'no-message-id'];
const samples = (): Buffer[] => [
  ...KINDS.map((kind, i) => corpusMessage(kind, 'inbox@example.com', i).raw),
  ...fs.readdirSync(fixtures).map((name) => fs.readFileSync(path.join(fixtures, name))),
  Buffer.from('\r\njust a body\r\n'),
];

describe('parsing on worker threads', () => {
  const pool = new ParsePool(2);
  after(() => pool.close());

  it('gives exactly what parseMessage gives on the calling thread, attachments as Buffers', async () => {
    const raws = samples();
    const [here, there] = await Promise.all([Promise.all(raws.map((r) => parseMessage(r))), Promise.all(raws.map((r) => pool.parse(r)))]);
    assert.deepEqual(there, here);
    assert.equal(pool.workerParses, raws.length, 'every message was parsed by a worker');
    const attachments = there.flatMap((o) => (o.ok ? o.message.attachments : []));
    assert.ok(attachments.length > 0, 'the samples carry attachments');
    for (const a of attachments) assert.ok(Buffer.isBuffer(a.content), `${a.filename} arrives as a Buffer`);
  });

  it('still answers every message when its workers stop in the middle, on the calling thread', async () => {
    const own = new ParsePool(1);
    // Enough that the worker cannot answer them all before close() reaches it (the everyday shapes take the
    // fast reader, parse-simple.ts: 200 of them were done in the time close() took).
    const raws = Array.from({ length: 2000 }, (_, i) => corpusMessage(KINDS[i % KINDS.length]!, 'inbox@example.com', i).raw);
    const pending = raws.map((r) => own.parse(r));
    // Stop it once it is loaded and working: closing before its first answer would test a worker that never
    // started (which makes the pool parse everything here from then on), not one that died holding messages.
    while (own.workerParses === 0) await new Promise((resolve) => setImmediate(resolve));
    await own.close();
    const byWorker = own.workerParses;
    assert.ok(byWorker < raws.length, `the worker still held messages when it stopped (it had answered ${byWorker})`);
    const outcomes = await Promise.all(pending);
    assert.deepEqual(outcomes, await Promise.all(raws.map((r) => parseMessage(r))));
  });
});

/** A plain message with `marker` in its body (or, `inHeader`, in a header field of its own). */
const marked = (marker: string, n: number, inHeader = false): Buffer => {
  const raw = corpusMessage('plain', 'inbox@example.com', n).raw.toString('latin1');
  return Buffer.from(inHeader ? `X-Marker: ${marker}\r\n${raw}` : raw.replace(`Plain body ${n}.`, `Plain body ${n}. ${marker}`), 'latin1');
};

/** Runs `work` and returns its result with the longest stall of this thread's event loop meanwhile, in ms. */
async function longestStall<T>(work: () => Promise<T>): Promise<{ result: T; stallMs: number }> {
  let last = performance.now();
  let stallMs = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last);
    last = now;
  }, 10);
  try {
    return { result: await work(), stallMs };
  } finally {
    clearInterval(tick);
  }
}

describe('the parse budget', () => {
  const STALL = 'STALL-THIS-PARSE';
  const CRASH = 'CRASH-THIS-WORKER';

  it('terminates a worker past the budget, answers that message with a failure and its header fields, and parses the ones queued behind it once', async () => {
    const pool = new ParsePool(1, { budgetMs: 1000, testHooks: { stallOn: STALL } });
    after(() => pool.close());
    const before = Array.from({ length: 5 }, (_, i) => corpusMessage(KINDS[i % KINDS.length]!, 'inbox@example.com', i).raw);
    const behind = Array.from({ length: 20 }, (_, i) => corpusMessage(KINDS[i % KINDS.length]!, 'inbox@example.com', 100 + i).raw);
    const stalled = marked(STALL, 50);
    const started = performance.now();
    const { result, stallMs } = await longestStall(() => Promise.all([...before, stalled, ...behind].map((r) => pool.parse(r))));
    const elapsed = performance.now() - started;
    const outcome = result[before.length]!;
    assert.equal(outcome.ok, false);
    assert.ok(!outcome.ok && outcome.error === overBudgetReason(1000), 'the failure says why');
    assert.match(overBudgetReason(1000), /^Parsing took longer than 1 s .*the raw message is kept/);
    assert.ok(!outcome.ok && outcome.headers?.ok && outcome.headers.message.subject === 'plain #50', 'its header fields were read (by a worker) for quarantine to show');
    const others = result.filter((_, i) => i !== before.length);
    assert.deepEqual(others, await Promise.all([...before, ...behind].map((r) => parseMessage(r))), 'every other message is answered as parseMessage answers it');
    assert.equal(pool.overruns, 1);
    assert.equal(pool.workerParses, before.length + behind.length + 1, 'all by workers (the +1 is the header section), none on this thread');
    assert.ok(elapsed >= 1000 && elapsed < 15_000, `answered after the budget, not never (${elapsed.toFixed(0)} ms)`);
    assert.ok(stallMs < 800, `this thread never waited on the stalled parse (longest stall ${stallMs.toFixed(0)} ms)`);
    // The pool goes on with a new worker.
    const next = corpusMessage('attachment', 'inbox@example.com', 999).raw;
    assert.deepEqual(await pool.parse(next), await parseMessage(next));
  });

  it('times each message from when its worker starts on it, so a queue behind slow-but-honest ones does not overrun', async () => {
    const pool = new ParsePool(1, { budgetMs: 1500 });
    after(() => pool.close());
    // 3,000 messages queued on one worker take longer than 1.5 s in all, each far less.
    const raws = Array.from({ length: 3000 }, (_, i) => corpusMessage(KINDS[i % KINDS.length]!, 'inbox@example.com', i).raw);
    const started = performance.now();
    const outcomes = await Promise.all(raws.map((r) => pool.parse(r)));
    const elapsed = performance.now() - started;
    assert.equal(pool.overruns, 0, `no overrun in ${elapsed.toFixed(0)} ms`);
    assert.equal(outcomes.filter((o) => !o.ok).length, 0);
  });

  it('a header section that overruns too leaves the failure without header fields, and the budget is spent twice at most', async () => {
    const pool = new ParsePool(1, { budgetMs: 500, testHooks: { stallOn: STALL } });
    after(() => pool.close());
    const outcome = await pool.parse(marked(STALL, 7, true));
    assert.ok(!outcome.ok && outcome.error === overBudgetReason(500));
    assert.ok(!outcome.ok && outcome.headers && !outcome.headers.ok, 'no header fields');
    assert.equal(pool.overruns, 2);
  });

  it(`a message whose worker crashes gets one more worker, then a failure after ${PARSE_CRASHES_TOLERATED} crashes: never the calling thread; the rest are parsed once`, async () => {
    const pool = new ParsePool(2, { budgetMs: 5000, testHooks: { crashOn: CRASH } });
    after(() => pool.close());
    pool.start();
    const raws = Array.from({ length: 40 }, (_, i) => corpusMessage(KINDS[i % KINDS.length]!, 'inbox@example.com', i).raw);
    const crashing = marked(CRASH, 60);
    const outcomes = await Promise.all([...raws.slice(0, 20), crashing, ...raws.slice(20)].map((r) => pool.parse(r)));
    const outcome = outcomes[20]!;
    assert.ok(!outcome.ok && outcome.error.startsWith(crashedReason('').split('(')[0]!), !outcome.ok ? outcome.error : 'parsed');
    assert.ok(!outcome.ok && /the parse worker crashed \(test hook\)/.test(outcome.error), 'with the cause');
    assert.ok(!outcome.ok && outcome.headers?.ok && outcome.headers.message.subject === 'plain #60');
    assert.equal(pool.crashes, PARSE_CRASHES_TOLERATED);
    assert.deepEqual(outcomes.filter((_, i) => i !== 20), await Promise.all(raws.map((r) => parseMessage(r))));
    assert.equal(pool.workerParses, raws.length + 1, 'all on workers: the pool did not give up on them');
  });

  it('with a budget a message over WORKER_PARSE_MAX_BYTES goes to a worker too; without one it is parsed on the calling thread', async () => {
    // Two attachments: views of one decoded buffer, which the worker transfers whole rather than copying.
    const part = (name: string, bytes: Buffer) => `--b\r\nContent-Type: application/octet-stream; name="${name}"\r\nContent-Transfer-Encoding: base64\r\n\r\n${bytes.toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n`;
    const big = Buffer.from(
      `From: a@example.com\r\nTo: inbox@example.com\r\nSubject: big\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n${part('one.bin', Buffer.alloc(WORKER_PARSE_MAX_BYTES, 1))}${part('two.bin', Buffer.alloc(300_000, 2))}--b--\r\n`,
    );
    const budgeted = new ParsePool(1, { budgetMs: 20_000 });
    const unbounded = new ParsePool(1, { budgetMs: 0 });
    after(() => Promise.all([budgeted.close(), unbounded.close()]));
    const expected = await parseMessage(big);
    assert.ok(expected.ok && expected.message.attachments.length === 2);
    const there = await budgeted.parse(big);
    assert.deepEqual(there, expected);
    assert.equal(budgeted.workerParses, 1);
    assert.ok(there.ok && there.message.attachments.every((a) => Buffer.isBuffer(a.content)));
    assert.ok(there.ok && there.message.attachments[1]!.content.every((b) => b === 2), 'each attachment its own bytes of the shared buffer');
    assert.deepEqual(await unbounded.parse(big), expected);
    assert.equal(unbounded.workerParses, 0);
  });

  it('a budget means at least one worker, even on 2 cores; without one the default is the cores but two', () => {
    assert.ok(defaultParseWorkers(20_000) >= 1);
    assert.equal(defaultParseWorkers(0), Math.min(4, Math.max(0, os.availableParallelism() - 2)));
  });
});

describe("the process's pool (JUNIPER_PARSE_WORKERS)", () => {
  after(() => setSharedParseWorkers(undefined));

  it('takes the configured size, parses there, and goes back to the default when the setting is gone', async () => {
    setSharedParseWorkers(1);
    const pool = sharedParsePool();
    assert.equal(pool.size, 1);
    assert.equal(sharedParseWorkers(), 1);
    const raw = corpusMessage('plain', 'inbox@example.com', 1).raw;
    assert.deepEqual(await pool.parse(raw), await parseMessage(raw));
    assert.equal(pool.workerParses, 1, 'parsed by its worker, not on this thread');
    setSharedParseWorkers(1);
    assert.equal(sharedParsePool(), pool, 'the same size keeps the running pool');
    setSharedParseWorkers(0);
    assert.equal(sharedParsePool().size, 0, 'another size replaces it: 0 parses on the calling thread');
    setSharedParseWorkers(undefined);
    assert.equal(sharedParsePool().size, defaultParseWorkers());
  });
});
