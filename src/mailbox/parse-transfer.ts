// What crosses between a fetch and its parse worker. A structured clone of a Buffer copies the whole
// ArrayBuffer behind it (imapflow's sources and mailparser's small Buffers are slices of larger ones), so
// every byte array is first copied to an ArrayBuffer of its own size and transferred, not cloned.
import type { ParseOutcome } from './parse.js';

export interface ParseRequest {
  id: number;
  raw: Uint8Array;
}

export interface ParseReply {
  id: number;
  outcome: ParseOutcome;
}

/** Sent once by a worker when it has loaded the parser and listens. */
export interface WorkerSignal {
  ready: true;
}

/**
 * Tests only: messages containing `stallOn` make the worker spin for ever, `blockOn` block it for ever without
 * using the CPU (Atomics.wait: to the pool and to terminate() the same as a spin, and free for a test suite
 * that waits out budgets on 2 cores), `crashOn` crash its thread.
 */
export interface WorkerHooks {
  stallOn?: string;
  blockOn?: string;
  crashOn?: string;
}

/** `bytes` in an ArrayBuffer of exactly its length, ready to transfer. */
export function ownBytes(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}

/**
 * Above this an attachment's ArrayBuffer is transferred as it is, not copied first. It is then parse-stream.ts's
 * buffer of the message's decoded attachments (allocUnsafeSlow: its own, never Node's 8 KB pool, whose transfer
 * would break every Buffer still sliced from it) or the worker's copy of the message, both dead in the worker
 * once the message is answered. A 25 MB message's attachments are not copied a second time in the worker.
 */
const TRANSFER_WHOLE_BYTES = 64 * 1024;

/** The outcome with its attachments' bytes in transferable ArrayBuffers, and those buffers. */
export function transferableOutcome(outcome: ParseOutcome): { outcome: ParseOutcome; transfer: ArrayBuffer[] } {
  if (!outcome.ok) return { outcome, transfer: [] };
  const transfer = new Set<ArrayBuffer>();
  const attachments = outcome.message.attachments.map((a) => {
    const whole = a.content.buffer;
    if (whole instanceof ArrayBuffer && whole.byteLength > TRANSFER_WHOLE_BYTES) {
      transfer.add(whole);
      return a;
    }
    const own = ownBytes(a.content);
    transfer.add(own.buffer as ArrayBuffer);
    return { ...a, content: own as Buffer };
  });
  return { outcome: { ok: true, message: { ...outcome.message, attachments } }, transfer: [...transfer] };
}

/** The outcome as it arrived from a worker, attachment bytes made Buffers again (a clone delivers Uint8Arrays). */
export function revivedOutcome(outcome: ParseOutcome): ParseOutcome {
  if (!outcome.ok) return outcome;
  const attachments = outcome.message.attachments.map((a) => ({ ...a, content: Buffer.from(a.content.buffer, a.content.byteOffset, a.content.byteLength) }));
  return { ok: true, message: { ...outcome.message, attachments } };
}
