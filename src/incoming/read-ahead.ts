// Reads an async source ahead of its consumer, up to a bound: the IMAP transfer (and the parsing started as a
// message arrives) goes on while the consumer writes earlier messages to the database. What is queued is at
// most `maxItems` items and about `maxBytes` bytes (one item always fits), so memory stays bounded.
export async function* readAhead<T>(source: AsyncIterable<T>, cost: (item: T) => number, maxItems: number, maxBytes: number): AsyncGenerator<T> {
  const queue: T[] = [];
  let queuedBytes = 0;
  let finished = false;
  let failure: { error: unknown } | undefined;
  let wakeConsumer: (() => void) | undefined;
  let wakeProducer: (() => void) | undefined;
  let stopped = false;
  const full = () => queue.length >= maxItems || (queue.length > 0 && queuedBytes >= maxBytes);
  const pump = (async () => {
    try {
      for await (const item of source) {
        queue.push(item);
        queuedBytes += cost(item);
        wakeConsumer?.();
        // After the consumer stopped, the rest is read and dropped: the source (a FETCH) has to end anyway.
        while (full() && !stopped) await new Promise<void>((resolve) => (wakeProducer = resolve));
        if (stopped) queue.length = 0;
      }
    } catch (error) {
      failure = { error };
    } finally {
      finished = true;
      wakeConsumer?.();
    }
  })();
  try {
    for (;;) {
      const item = queue.shift();
      if (item !== undefined) {
        queuedBytes -= cost(item);
        wakeProducer?.();
        yield item;
        continue;
      }
      if (finished) {
        if (failure) throw failure.error;
        return;
      }
      await new Promise<void>((resolve) => (wakeConsumer = resolve));
      wakeConsumer = undefined;
    }
  } finally {
    stopped = true;
    wakeProducer?.();
    // The source ends before the consumer goes on: no other IMAP command may run during a FETCH.
    await pump;
  }
}
