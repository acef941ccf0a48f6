// Parsing off the main thread, within a time budget. mailparser costs more CPU per small message than
// imapflow's whole share of it, and it ran on the thread that also reads IMAP and writes the database, so one
// core did everything. ParsePool runs the same parseMessage (parse-worker.ts) on worker threads: results are
// the same values, only computed elsewhere.
//
// A worker is also the only place a parse can be stopped: synchronous JavaScript on the calling thread cannot
// be interrupted, so one message that meets a hidden quadratic path in a library (html-to-text's word wrap
// once took minutes, html-text.ts) would hold the whole fetch, its lease and everything else on that thread.
// Each worker parses its messages one after the other, and the message it is on is timed from the moment it
// became the worker's current one. Past the budget the worker is terminated; that message is answered with a
// failure (quarantine keeps its raw bytes and says why) and never parsed anywhere else; the messages queued
// behind it are given to a worker again, each answered once. A worker that dies by itself names its
// current message the same way (see `crashed`).
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { headerSection, QUARANTINE_HEADER_BYTES } from './dedupe.js';
import type { ParseOutcome } from './parse.js';
import { parseMessage } from './parse-on-demand.js';
import { ownBytes, revivedOutcome, type ParseReply, type WorkerHooks, type WorkerSignal } from './parse-transfer.js';

/**
 * Without a budget, messages up to this size go to a worker and larger ones are parsed where they are: the
 * copy handed to a worker is one more copy of the message in memory. With a budget every message goes to a
 * worker, since only there can its parse be stopped (the memory this costs is measured in docs/benchmarks.md).
 */
export const WORKER_PARSE_MAX_BYTES = 1024 * 1024;

/** JUNIPER_PARSE_BUDGET_SECONDS's default: far above any honest parse (a 40 MB message takes 1-2 s), far below the 300 s fetch lease. */
export const DEFAULT_PARSE_BUDGET_MS = 20_000;

/** After a worker of the pool has answered, this many starts in a row that never load mean workers cannot start here. */
const FAILED_STARTS_TOLERATED = 3;

/** A message whose worker dies this many times while parsing it is not tried again (see `crashed`). */
export const PARSE_CRASHES_TOLERATED = 2;

export type Parse = (raw: Buffer) => Promise<ParseOutcome>;

export interface ParsePoolOptions {
  /** The longest one message's parse may take on a worker, in ms; 0: no budget. Default DEFAULT_PARSE_BUDGET_MS. */
  budgetMs?: number;
  /** Tests only: what makes the workers' parse of a message spin or crash (parse-worker.ts). */
  testHooks?: WorkerHooks;
}

export function overBudgetReason(budgetMs: number): string {
  return `Parsing took longer than ${budgetMs / 1000} s (the parse budget, JUNIPER_PARSE_BUDGET_SECONDS), so Juniper stopped it; the raw message is kept here unchanged (download the original to read it) and the mailbox went on with the next message.`;
}

export function crashedReason(cause: string): string {
  return `The parser's thread died ${PARSE_CRASHES_TOLERATED} times while reading this message (${cause}), so Juniper did not try it again; the raw message is kept here unchanged (download the original to read it) and the mailbox went on with the next message.`;
}

interface Job {
  raw: Buffer;
  resolve: (outcome: ParseOutcome) => void;
  /** Workers that died while this was their current message. */
  crashes: number;
  /** A header section read for a failed message's quarantine row: its own failure carries no headers again. */
  forHeaders: boolean;
}

/** The worker thread: parse-worker.js next to this file; from the TypeScript sources (tests, bench) through tsx. */
function startWorker(hooks: WorkerHooks | undefined): Worker {
  const options = { workerData: { hooks } };
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./parse-worker.js', import.meta.url), options);
  // A worker does not inherit the `--import tsx` loader for its entry file, so it registers tsx itself first.
  const tsx = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./parse-worker.ts', import.meta.url).href;
  return new Worker(`import(${JSON.stringify(tsx)}).then((t) => { t.register(); return import(${JSON.stringify(entry)}); });`, { ...options, eval: true });
}

interface SlotEvents {
  answered: (slot: Slot, job: Job, outcome: ParseOutcome) => void;
  overran: (slot: Slot, job: Job, queued: Job[]) => void;
  /** `current`: the message it was parsing (undefined when it died before loading, or idle). */
  died: (slot: Slot, cause: string, current: Job | undefined, queued: Job[]) => void;
}

/** One worker and the messages handed to it, in the order it parses them: jobs[0] is the current one. */
class Slot {
  private jobs: { id: number; job: Job }[] = [];
  /** Loaded and listening: a death before that is a thread that cannot start here, not a message's doing. */
  ready = false;
  private ended = false;
  /** It reported an error: it ends, whatever it was doing (see 'exit'). */
  private dying = false;
  private timer: NodeJS.Timeout | undefined;
  /** The id of the message the timer is for. */
  private timed: number | undefined;
  private readonly worker: Worker;

  constructor(
    private readonly budgetMs: number,
    hooks: WorkerHooks | undefined,
    private readonly events: SlotEvents,
  ) {
    this.worker = startWorker(hooks);
    this.worker.unref();
    this.worker.on('message', (msg: ParseReply | WorkerSignal) => {
      if (this.ended) return;
      if ('ready' in msg) {
        this.ready = true;
        this.time();
        return;
      }
      const head = this.jobs[0];
      // Answers come in order; one for anything else would be a worker out of step, which the budget then ends.
      if (!head || head.id !== msg.id) return;
      this.jobs.shift();
      this.time();
      if (this.jobs.length === 0) this.worker.unref();
      this.events.answered(this, head.job, revivedOutcome(msg.outcome));
    });
    const died = (cause: string) => {
      if (this.ended) return;
      const current = this.ready ? this.jobs.shift()?.job : undefined;
      this.end();
      this.events.died(this, cause, current, this.take());
    };
    // Handled at 'exit', not at 'error': Node delivers every message the worker sent before emitting 'exit',
    // while 'error' can come first, so a worker that crashed on a message after it signalled ready would pass
    // for one that could not start (and its messages would go to the calling thread, the culprit with them).
    // Its clock stops at 'error' all the same: a thread can take seconds to end on a busy machine, and the
    // message that killed it has not overrun its budget.
    let error: string | undefined;
    this.worker.on('error', (err) => {
      error ??= err.message || 'an error';
      this.dying = true;
      clearTimeout(this.timer);
    });
    this.worker.on('exit', (code) => died(error ?? `its thread ended with code ${code}`));
  }

  get size(): number {
    return this.jobs.length;
  }

  post(id: number, job: Job): void {
    this.jobs.push({ id, job });
    // A worker with work keeps the process alive (a CLI fetch awaits it); an idle one does not.
    if (this.jobs.length === 1) this.worker.ref();
    const bytes = ownBytes(job.raw);
    this.worker.postMessage({ id, raw: bytes }, [bytes.buffer as ArrayBuffer]);
    this.time();
  }

  /** Stops the worker; the messages it held are returned, none answered. */
  async stop(): Promise<Job[]> {
    this.end();
    const held = this.take();
    await this.worker.terminate();
    return held;
  }

  /** The current message's clock: started when it becomes current on a loaded worker, stopped with its answer. */
  private time(): void {
    const current = this.jobs[0]?.id;
    // Already timing this message (another one was queued behind it): its clock goes on.
    if (this.timer && this.timed === current) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.budgetMs <= 0 || !this.ready || current === undefined || this.ended || this.dying) return;
    this.timed = current;
    this.timer = setTimeout(() => {
      if (this.ended || this.dying || this.jobs[0]?.id !== current) return;
      const job = this.jobs.shift()!.job;
      this.end();
      const queued = this.take();
      // terminate() interrupts even a loop that never yields (V8 stops the isolate's JavaScript).
      void this.worker.terminate();
      this.events.overran(this, job, queued);
    }, this.budgetMs);
    this.timer.unref();
  }

  private end(): void {
    this.ended = true;
    clearTimeout(this.timer);
  }

  private take(): Job[] {
    const jobs = this.jobs.map((j) => j.job);
    this.jobs = [];
    return jobs;
  }
}

export class ParsePool {
  private slots: Slot[] = [];
  private nextId = 1;
  /** Set when workers cannot start here (no worker threads, a missing file): everything is parsed here. */
  private unavailable = false;
  /** Whether a worker of this pool ever answered, and how many started since then died before they loaded. */
  private everAnswered = false;
  private failedStarts = 0;
  private closing = false;
  readonly budgetMs: number;
  /** Messages parsed by a worker so far (a test reads it to prove the workers did the work). */
  workerParses = 0;
  /** Workers terminated for overrunning the budget, and workers that died by themselves while parsing. */
  overruns = 0;
  crashes = 0;

  /** `size` workers at most (started when first needed); 0 parses everything on the calling thread, without a budget. */
  constructor(
    readonly size: number,
    private readonly options: ParsePoolOptions = {},
  ) {
    this.budgetMs = options.budgetMs ?? DEFAULT_PARSE_BUDGET_MS;
  }

  /** Like parseMessage (never rejects), on the least busy worker. */
  parse: Parse = (raw) => {
    if (raw.length > WORKER_PARSE_MAX_BYTES && this.budgetMs <= 0) return parseMessage(raw);
    return new Promise<ParseOutcome>((resolve) => this.dispatch({ raw, resolve, crashes: 0, forHeaders: false }));
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
    const held = await Promise.all(slots.map((s) => s.stop()));
    // None of these is a suspect (they were stopped, not killed by a message), so the calling thread may read them.
    for (const job of held.flat()) this.dispatch(job);
  }

  private dispatch(job: Job): void {
    if (this.size === 0 || this.unavailable) {
      void parseMessage(job.raw).then(job.resolve);
      return;
    }
    this.slot().post(this.nextId++, job);
  }

  private slot(): Slot {
    if (this.slots.length < this.size && this.slots.every((s) => s.size > 0)) this.add();
    return this.slots.reduce((best, s) => (s.size < best.size ? s : best));
  }

  private add(): void {
    this.slots.push(
      new Slot(this.budgetMs, this.options.testHooks, {
        answered: (_slot, job, outcome) => {
          this.workerParses++;
          this.everAnswered = true;
          this.failedStarts = 0;
          job.resolve(outcome);
        },
        overran: (slot, job, queued) => {
          this.overruns++;
          this.drop(slot);
          this.fail(job, overBudgetReason(this.budgetMs));
          for (const q of queued) this.dispatch(q);
        },
        died: (slot, cause, current, queued) => this.crashed(slot, cause, current, queued),
      }),
    );
  }

  private drop(slot: Slot): void {
    this.slots = this.slots.filter((s) => s !== slot);
  }

  /**
   * A worker that died by itself. Before it loaded, it cannot start here (no worker threads, a missing file):
   * everything is parsed on the calling thread from then on, as without workers. After, the message it was
   * parsing is the suspect, and it is NOT handed to the calling thread, as it once was for a worker out of
   * memory: a worker parses one message at a time, so a message that exhausts a worker's heap (the same size
   * as the main thread's) would exhaust the main thread's too and end the whole process, fetches, API and all;
   * and a library that throws outside its promise (what kills a worker) would throw there as an uncaught
   * exception, with the same end. So it gets another worker, in case the death was not its doing, and after
   * PARSE_CRASHES_TOLERATED deaths it is answered with a failure (quarantine keeps its bytes). The messages
   * queued behind it were not started: they go to a worker again.
   */
  private crashed(slot: Slot, cause: string, current: Job | undefined, queued: Job[]): void {
    this.drop(slot);
    if (this.closing) {
      for (const q of [...(current ? [current] : []), ...queued]) this.dispatch(q);
      return;
    }
    // Workers cannot start here: the first one never loaded, or several in a row did not after others worked.
    // Not one that failed once after others worked (memory short for a moment): giving up on workers for good
    // would parse every later message here, without a budget, and a parse here cannot be stopped.
    if (!slot.ready && (!this.everAnswered || ++this.failedStarts >= FAILED_STARTS_TOLERATED)) this.unavailable = true;
    if (current) {
      this.crashes++;
      current.crashes++;
      if (current.crashes >= PARSE_CRASHES_TOLERATED) this.fail(current, crashedReason(cause));
      else this.dispatch(current);
    }
    for (const q of queued) this.dispatch(q);
  }

  /**
   * Answers a message that could not be parsed safely with `error`, and the header fields quarantine shows
   * (subject, sender), read from its header section by a worker within the budget too: read on the calling
   * thread, a header section that is itself the trouble would hang it after all.
   */
  private fail(job: Job, error: string): void {
    const head = headerSection(job.raw, QUARANTINE_HEADER_BYTES);
    if (job.forHeaders || head.length === job.raw.length) {
      // The header section is what failed (or all there is): nothing more is read from it.
      job.resolve({ ok: false, error, headers: { ok: false, error: 'not read: it is what the parse failed on' } });
      return;
    }
    new Promise<ParseOutcome>((resolve) => this.dispatch({ raw: head, resolve, crashes: 0, forHeaders: true })).then(
      (headers) => job.resolve({ ok: false, error, headers }),
      () => job.resolve({ ok: false, error }),
    );
  }
}

/**
 * Workers for a machine: all cores but two, at most 4. One is the thread that reads IMAP and writes the
 * database, one is left to the database, the IMAP server and everything else; on 2 cores under the load of
 * other processes a worker added hand-over delays rather than speed (docs/benchmarks.md), but with a parse
 * budget there is one all the same: without a worker no parse can be stopped.
 */
export const defaultParseWorkers = (budgetMs = DEFAULT_PARSE_BUDGET_MS): number => Math.min(4, Math.max(budgetMs > 0 ? 1 : 0, os.availableParallelism() - 2));

let shared: ParsePool | undefined;
let configured: { workers?: number; budgetMs?: number } = {};

const sharedBudgetMs = (): number => configured.budgetMs ?? DEFAULT_PARSE_BUDGET_MS;

/** The workers the process's pool has: JUNIPER_PARSE_WORKERS when set, else defaultParseWorkers(). */
export const sharedParseWorkers = (): number => configured.workers ?? defaultParseWorkers(sharedBudgetMs());

/**
 * Sets the process's pool (JUNIPER_PARSE_WORKERS and JUNIPER_PARSE_BUDGET_SECONDS; undefined: the defaults).
 * A pool of another size or budget already running is stopped: messages it held are parsed on the calling
 * thread, the next ones by the new pool.
 */
export function setSharedParseWorkers(size: number | undefined, budgetMs?: number): void {
  configured = { ...(size !== undefined ? { workers: size } : {}), ...(budgetMs !== undefined ? { budgetMs } : {}) };
  if (shared && (shared.size !== sharedParseWorkers() || shared.budgetMs !== sharedBudgetMs())) {
    void shared.close();
    shared = undefined;
  }
}

/** The process's pool (started lazily; idle workers never keep the process alive). */
export function sharedParsePool(): ParsePool {
  return (shared ??= new ParsePool(sharedParseWorkers(), { budgetMs: sharedBudgetMs() }));
}
