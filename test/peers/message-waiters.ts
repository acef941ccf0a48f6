// `waitFor(n)` for the peers that keep what they received (the SMTP sink, the Graph server): resolves with the
// messages once there are n, or rejects after the timeout saying how many came.
export interface MessageWaiters<T> {
  waitFor: (n: number, timeoutMs?: number) => Promise<T[]>;
  /** Call after each message is kept. */
  arrived: () => void;
}

export function messageWaiters<T>(messages: readonly T[], peer: string): MessageWaiters<T> {
  const waiters = new Set<{ n: number; resolve: () => void }>();
  return {
    waitFor: (n, timeoutMs = 5000) => {
      if (messages.length >= n) return Promise.resolve(messages.slice());
      return new Promise((resolve, reject) => {
        const waiter = {
          n,
          resolve: () => {
            clearTimeout(timer);
            waiters.delete(waiter);
            resolve(messages.slice());
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`${peer}: expected ${n} message(s) within ${timeoutMs} ms, got ${messages.length}`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    arrived: () => {
      for (const waiter of waiters) if (messages.length >= waiter.n) waiter.resolve();
    },
  };
}
