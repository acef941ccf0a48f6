// Group commit for sent mails: outcomes that arrive within a few milliseconds, or while a write is under way,
// go together in one write (one UPDATE, one commit, instead of one per mail). Each mail's record() resolves once its row is written,
// so the dispatcher still learns of a failed write per mail. When a joint write fails, each of its mails is
// written alone, so one bad row (a trigger, a constraint) does not keep the others' outcomes unrecorded.
import type { OutgoingQueue, SentItem } from './queue.js';

/** How long outcomes gather before they are written together. */
const GATHER_MS = 5;

interface Waiting {
  item: SentItem;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class SentWriter {
  private waiting: Waiting[] = [];
  private writing = false;

  constructor(
    private readonly queue: Pick<OutgoingQueue, 'markSentMany' | 'markSent'>,
    private readonly owner: string,
  ) {}

  record(item: SentItem): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      if (!this.writing) {
        this.writing = true;
        // Let the sends that finish in the next few milliseconds join the write. better-sqlite3 writes
        // synchronously, so "while a write is under way" alone gathered nothing there: one statement per mail.
        setTimeout(() => void this.flush(), GATHER_MS);
      }
    });
  }

  private async flush(): Promise<void> {
    while (this.waiting.length > 0) {
      const batch = this.waiting;
      this.waiting = [];
      try {
        await this.queue.markSentMany(this.owner, batch.map((w) => w.item));
        for (const w of batch) w.resolve();
      } catch {
        for (const w of batch) {
          const { id, ...outcome } = w.item;
          await this.queue.markSent(id, this.owner, outcome).then(w.resolve, w.reject);
        }
      }
    }
    this.writing = false;
  }
}
