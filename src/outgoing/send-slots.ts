// Per server, how many of its mails this process builds and sends at once: as many as it has connections
// (Graph: concurrent requests). A mail takes a slot before its attachments are read and gives it back when its
// send has settled, so the mails claimed beyond that wait as rows (a few hundred bytes) instead of as built
// messages: without this, every mail of a claimed batch read its attachments at once and held them while it
// waited inside nodemailer's pool for a connection, long enough for V8 to move the bytes' owners to the old
// generation, which only a full collection frees (docs/benchmarks.md, outbound memory). Waiters go in turn.

interface ServerSlots {
  running: number;
  limit: number;
  waiting: (() => void)[];
}

export class SendSlots {
  private readonly servers = new Map<number, ServerSlots>();

  /**
   * Resolves with the function that gives the slot back (once; later calls do nothing) when fewer than `limit`
   * of the server's sends hold one. The latest limit asked for applies (a server's pool size may be edited
   * while mails wait). An abort of `signal` before the slot is given rejects with its reason.
   */
  acquire(serverId: number, limit: number, signal?: AbortSignal): Promise<() => void> {
    let slots = this.servers.get(serverId);
    if (!slots) this.servers.set(serverId, (slots = { running: 0, limit: 1, waiting: [] }));
    slots.limit = Math.max(1, limit);
    const s = slots;
    const taken = new Promise<() => void>((resolve, reject) => {
      const admitted = () => {
        signal?.removeEventListener('abort', cancel);
        resolve(this.releaser(serverId, s));
      };
      // A waiter whose send is called off (the dispatcher gives a stalled server's mails back) leaves the line.
      const cancel = () => {
        const i = s.waiting.indexOf(admitted);
        if (i < 0) return;
        s.waiting.splice(i, 1);
        if (s.running === 0 && s.waiting.length === 0) this.servers.delete(serverId);
        // The signal's own reason, so that the caller knows its abort (a DOMException unless it gave one).
        reject(signal?.reason as Error);
      };
      s.waiting.push(admitted);
      signal?.addEventListener('abort', cancel, { once: true });
    });
    this.admit(s);
    return taken;
  }

  /** Sends of the server holding a slot, and mails waiting for one (for tests and diagnostics). */
  usage(serverId: number): { running: number; waiting: number } {
    const s = this.servers.get(serverId);
    return { running: s?.running ?? 0, waiting: s?.waiting.length ?? 0 };
  }

  private admit(s: ServerSlots): void {
    while (s.running < s.limit && s.waiting.length > 0) {
      s.running++;
      s.waiting.shift()!();
    }
  }

  private releaser(serverId: number, s: ServerSlots): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      s.running--;
      this.admit(s);
      if (s.running === 0 && s.waiting.length === 0) this.servers.delete(serverId);
    };
  }
}
