// Parsing off the main thread. mailparser costs more CPU per small message than imapflow's whole share of
// it, and it ran on the thread that also reads IMAP and writes the database, so one core did everything.
// ParsePool runs the same parseMessage (parse-worker.ts) on worker threads: results are the same values,
// only computed elsewhere. Large messages are parsed on the calling thread: copying them to a worker
// would add a copy of the message to memory for little gain. A worker that dies (out of memory, a crash in
// a library) fails only the messages it held: they are parsed on the calling thread, and the next message
// starts a new worker.
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ParseOutcome } from './parse.js';
import { parseMessage } from './parse-on-demand.js';
import { ownBytes, revivedOutcome, type ParseReply } from './parse-transfer.js';

/** Messages up to this size go to a worker; larger ones are parsed where they are (see above). */
export const WORKER_PARSE_MAX_BYTES = 1024 * 1024;

export type Parse = (raw: Buffer) => Promise<ParseOutcome>;

interface Job {
  raw: Buffer;
  resolve: (outcome: ParseOutcome) => void;
}

/** The worker thread: parse-worker.js next to this file; from the TypeScript sources (tests, bench) through tsx. */
function startWorker(): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./parse-worker.js', import.meta.url));
  // A worker does not inherit the `--import tsx` loader for its entry file, so it registers tsx itself first.
  const tsx = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./parse-worker.ts', import.meta.url).href;
  return new Worker(`import(${JSON.stringify(tsx)}).then((t) => { t.register(); return import(${JSON.stringify(entry)}); });`, { eval: true });
}

class Slot {
  readonly jobs = new Map<number, Job>();
  /** Whether it ever answered: one that dies before that cannot start here, and is not tried again. */
  answered = false;
  private constructor(readonly worker: Worker) {}

  static start(onGone: (slot: Slot) => void, onAnswer: () => void): Slot {
    const slot = new Slot(startWorker());
    slot.worker.unref();
    slot.worker.on('message', (reply: ParseReply) => {
      slot.answered = true;
      onAnswer();
      const job = slot.jobs.get(reply.id);
      if (!job) return;
      slot.jobs.delete(reply.id);
      if (slot.jobs.size === 0) slot.worker.unref();
      job.resolve(revivedOutcome(reply.outcome));
    });
    const gone = () => {
      onGone(slot);
      const jobs = [...slot.jobs.values()];
      slot.jobs.clear();
      for (const job of jobs) void parseMessage(job.raw).then(job.resolve);
    };
    slot.worker.on('error', gone);
    slot.worker.on('exit', gone);
    return slot;
  }
}

export class ParsePool {
  private slots: Slot[] = [];
  private nextId = 1;
  /** Set when a worker could not start (no worker threads, a missing file): everything is parsed here. */
  private unavailable = false;
  private closing = false;
  /** Messages parsed by a worker so far (a test reads it to prove the workers did the work). */
  workerParses = 0;

  /** `size` workers at most (started when first needed); 0 parses everything on the calling thread. */
  constructor(readonly size: number) {}

  /** Like parseMessage (never rejects), on the least busy worker. */
  parse: Parse = (raw) => {
    if (this.size === 0 || this.unavailable || raw.length > WORKER_PARSE_MAX_BYTES) return parseMessage(raw);
    const slot = this.slot();
    const id = this.nextId++;
    return new Promise<ParseOutcome>((resolve) => {
      slot.jobs.set(id, { raw, resolve });
      // A worker with work keeps the process alive (a CLI fetch awaits it); an idle one does not.
      if (slot.jobs.size === 1) slot.worker.ref();
      const bytes = ownBytes(raw);
      slot.worker.postMessage({ id, raw: bytes }, [bytes.buffer as ArrayBuffer]);
    });
  };

  /** Starts the workers now (a fetch calls it before it connects, so they are ready by the first message). */
  start(): void {
    while (!this.unavailable && !this.closing && this.slots.length < this.size) this.add();
  }

  /** Stops the workers; messages they held, and any parsed after this, are parsed on the calling thread. */
  async close(): Promise<void> {
    this.closing = true;
    this.unavailable = true;
    const slots = this.slots;
    this.slots = [];
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  private slot(): Slot {
    if (this.slots.length < this.size && this.slots.every((s) => s.jobs.size > 0)) this.add();
    return this.slots.reduce((best, s) => (s.jobs.size < best.jobs.size ? s : best));
  }

  private add(): void {
    const onGone = (gone: Slot) => {
      this.slots = this.slots.filter((s) => s !== gone);
      if (!gone.answered && !this.closing) this.unavailable = true;
    };
    this.slots.push(Slot.start(onGone, () => this.workerParses++));
  }
}

/**
 * Workers for a machine: all cores but two, at most 4. One is the thread that reads IMAP and writes the
 * database, one is left to the database, the IMAP server and everything else; on 2 cores under the load of
 * other processes a worker only added hand-over delays (docs/benchmarks.md), so there it is none.
 */
export const defaultParseWorkers = (): number => Math.min(4, Math.max(0, os.availableParallelism() - 2));

let shared: ParsePool | undefined;
let configured: number | undefined;

/** The workers the process's pool has: JUNIPER_PARSE_WORKERS when set, else defaultParseWorkers(). */
export const sharedParseWorkers = (): number => configured ?? defaultParseWorkers();

/**
 * Sets the process's pool size (JUNIPER_PARSE_WORKERS; undefined: the default). A pool of another size already
 * running is stopped: messages it held are parsed on the calling thread, the next ones by the new pool.
 */
export function setSharedParseWorkers(size: number | undefined): void {
  configured = size;
  if (shared && shared.size !== sharedParseWorkers()) {
    void shared.close();
    shared = undefined;
  }
}

/** The process's pool (started lazily; idle workers never keep the process alive). */
export function sharedParsePool(): ParsePool {
  return (shared ??= new ParsePool(sharedParseWorkers()));
}
