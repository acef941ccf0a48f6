import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { corpusMessage, type CorpusMessage } from '../../test/helpers/incoming.js';
import { defaultParseWorkers, ParsePool, setSharedParseWorkers, sharedParsePool, sharedParseWorkers } from './parse-pool.js';
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
