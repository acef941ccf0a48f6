// Shortcuts for outgoing-mail tests: a dispatcher with a controllable clock, and reading what a sink got.
import { simpleParser } from 'mailparser';
import type { App } from '../../src/app.js';
import type { TokenProvider } from '../../src/oauth/token-provider.js';
import { Dispatcher, defaultDispatcherOptions } from '../../src/outgoing/dispatcher.js';
import { transportPool } from '../../src/worker/workers.js';

export interface TestDispatcher {
  dispatcher: Dispatcher;
  /** Moves the dispatcher's clock forward (to reach a retry's next attempt without waiting). */
  advance(ms: number): void;
  /** Runs rounds until one claims nothing. */
  drain(): Promise<number>;
  close(): Promise<void>;
}

/** `tokens` replaces the app's token provider (e.g. a token store with a short request timeout). */
export function testDispatcher(app: App, owner = 'test-worker', options: { tokens?: TokenProvider } = {}): TestDispatcher {
  let offset = 0;
  const dispatcher = new Dispatcher(
    {
      queue: app.services.queue,
      servers: app.services.outgoingServers,
      parameters: app.services.parameters,
      transports: transportPool(app, options.tokens),
      log: app.logger,
      owner,
      now: () => Date.now() + offset,
    },
    { ...defaultDispatcherOptions, pollMs: 50 },
  );
  return {
    dispatcher,
    advance: (ms) => {
      offset += ms;
    },
    async drain() {
      let total = 0;
      for (let n = await dispatcher.runOnce(); n > 0; n = await dispatcher.runOnce()) total += n;
      return total;
    },
    close: () => dispatcher.stop(),
  };
}

export async function headersOf(raw: Buffer): Promise<{ from: string; replyTo: string; to: string; messageId: string; subject: string; bcc: string }> {
  const parsed = await simpleParser(raw);
  return {
    from: parsed.from?.text ?? '',
    replyTo: parsed.replyTo?.text ?? '',
    to: Array.isArray(parsed.to) ? parsed.to.map((t) => t.text).join(', ') : (parsed.to?.text ?? ''),
    messageId: parsed.messageId ?? '',
    subject: parsed.subject ?? '',
    bcc: parsed.headers.has('bcc') ? 'present' : '',
  };
}
