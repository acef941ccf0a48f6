// The worker side of ParsePool (parse-pool.ts): the same parseMessage, on another thread, so a fetch parses
// while the main thread reads IMAP and writes the database. This file is a worker's entry point: it starts
// listening when a Worker loads it, and nothing imports it. Messages are parsed one after the other, in the
// order they came: the pool times each from the moment the one before it was answered, so a parse budget is
// the message's own and a worker that dies or overruns names the message it was parsing.
import { parentPort, workerData } from 'node:worker_threads';
import { parseMessage } from './parse.js';
import { transferableOutcome, type ParseRequest, type ParseReply, type WorkerHooks, type WorkerSignal } from './parse-transfer.js';

const port = parentPort;
if (!port) throw new Error('parse-worker.ts runs only as a worker thread (ParsePool starts it)');
const hooks = ((workerData as { hooks?: WorkerHooks } | null)?.hooks ?? {}) satisfies WorkerHooks;

async function parseOne(request: ParseRequest): Promise<void> {
  // A view, not Buffer.from(Uint8Array)'s copy: the bytes were transferred to this thread for this parse alone.
  const raw = Buffer.from(request.raw.buffer, request.raw.byteOffset, request.raw.byteLength);
  // Tests only (ParsePool's testHooks, never set in production): a parse that never ends, or a thread that crashes.
  if (hooks.stallOn !== undefined && raw.includes(hooks.stallOn)) for (;;);
  if (hooks.blockOn !== undefined && raw.includes(hooks.blockOn)) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
  if (hooks.crashOn !== undefined && raw.includes(hooks.crashOn)) {
    setImmediate(() => {
      throw new Error('the parse worker crashed (test hook)');
    });
    return new Promise(() => undefined);
  }
  const outcome = await parseMessage(raw);
  const { outcome: sent, transfer } = transferableOutcome(outcome);
  port!.postMessage({ id: request.id, outcome: sent } satisfies ParseReply, transfer);
}

let queue = Promise.resolve();
port.on('message', (request: ParseRequest) => {
  queue = queue.then(() => parseOne(request));
});
// Loaded (the parser too): from now on a death is a message's doing, not a thread that cannot start here.
port.postMessage({ ready: true } satisfies WorkerSignal);
