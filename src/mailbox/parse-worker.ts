// The worker side of ParsePool (parse-pool.ts): the same parseMessage, on another thread, so a fetch parses
// while the main thread reads IMAP and writes the database. This file is a worker's entry point: it starts
// listening when a Worker loads it, and nothing imports it.
import { parentPort } from 'node:worker_threads';
import { parseMessage } from './parse.js';
import { transferableOutcome, type ParseRequest, type ParseReply } from './parse-transfer.js';

const port = parentPort;
if (!port) throw new Error('parse-worker.ts runs only as a worker thread (ParsePool starts it)');
port.on('message', (request: ParseRequest) => {
  void parseMessage(Buffer.from(request.raw)).then((outcome) => {
    const { outcome: sent, transfer } = transferableOutcome(outcome);
    port.postMessage({ id: request.id, outcome: sent } satisfies ParseReply, transfer);
  });
});
