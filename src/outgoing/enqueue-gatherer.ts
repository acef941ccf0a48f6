// Group commit for single enqueues: mails that arrive within a few milliseconds of each other (concurrent API
// requests) are written by one multi-row INSERT instead of one statement each, and the dispatcher is woken once
// for them all. Each caller is answered only once its row is committed. When a joint write fails, each of its
// mails is written alone, so one bad row answers its own request with its own error and the others are queued.
import type { Actor } from '../audit/audit-log.js';
import type { CheckedMail } from './enqueue-rules.js';
import { INSERT_CHUNK, type OutgoingQueue } from './queue.js';

/** How long single enqueues gather before their joint write; small against an API request's own time. */
const GATHER_MS = 2;

interface Waiting {
  mail: CheckedMail;
  actor: Actor;
  resolve: (stored: { id: number; messageId: string }) => void;
  reject: (err: unknown) => void;
}

export class EnqueueGatherer {
  private waiting: Waiting[] = [];
  private writing = false;

  constructor(
    private readonly queue: Pick<OutgoingQueue, 'insertMails' | 'enqueue'>,
    /** Called after each joint write that stored at least one mail (wakes the dispatcher). */
    private readonly stored: () => void,
  ) {}

  /** Stores one mail without attachments or original bytes; resolves once its row is committed. */
  enqueue(mail: CheckedMail, actor: Actor): Promise<{ id: number; messageId: string }> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ mail, actor, resolve, reject });
      if (!this.writing) {
        this.writing = true;
        // better-sqlite3 writes synchronously, so "while a write is under way" alone would gather nothing there.
        setTimeout(() => void this.flush(), GATHER_MS);
      }
    });
  }

  private async flush(): Promise<void> {
    while (this.waiting.length > 0) {
      const batch = this.waiting.splice(0, INSERT_CHUNK);
      let any = false;
      try {
        const stored = await this.queue.insertMails(batch.map((w) => ({ mail: w.mail, actor: w.actor })));
        batch.forEach((w, i) => w.resolve(stored[i]!));
        any = true;
      } catch {
        for (const w of batch) {
          await this.queue.enqueue(w.mail, w.actor).then(
            (stored) => {
              any = true;
              w.resolve(stored);
            },
            w.reject,
          );
        }
      }
      if (any) this.stored();
    }
    this.writing = false;
  }
}
