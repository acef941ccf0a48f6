// How long one send attempt may take, whatever the server does. nodemailer's timeouts are idle timeouts: a
// server that answers the end of DATA (or EHLO, AUTH, RCPT) with a "250-" continuation line every 50 s, never the
// last line, keeps the socket busy and the send pending for ever, and the dispatcher renews the mail's lease as
// long as it runs: a user's own outgoing server could so hold every in-flight slot of a worker, and its stop().
// The deadline covers the whole attempt (waiting for a connection, connecting, the session, the final reply);
// nodemailer is given an AbortSignal (mailOptions.signal, 10.5+), and on abort it takes the mail out of its queue
// or closes the connection delivering it (smtp-pool _watchAbortSignal), so no socket is left behind.
import { AppError } from '../lib/errors.js';
import type { OutgoingMessage } from './mail-transport.js';

/** The shortest deadline: a small mail over a slow but working link finishes well within it. */
export const SEND_DEADLINE_MIN_MS = 120_000;
/**
 * The slowest rate a working server is expected to take a message at; a larger message gets size / rate. At
 * 50 KB/s a 25 MB mail may take about 9 minutes.
 */
export const SEND_DEADLINE_BYTES_PER_SECOND = 50 * 1024;

export interface SendDeadlineOptions {
  minMs?: number;
  bytesPerSecond?: number;
}

/** The deadline of an attempt to send `bytes` bytes: max(minMs, bytes / bytesPerSecond). */
export function sendDeadlineMs(bytes: number, options: SendDeadlineOptions = {}): number {
  const minMs = options.minMs ?? SEND_DEADLINE_MIN_MS;
  const rate = options.bytesPerSecond ?? SEND_DEADLINE_BYTES_PER_SECOND;
  return Math.max(minMs, Math.ceil((bytes / rate) * 1000));
}

/** About the bytes the message takes on the wire: attachments base64-encoded (4/3), the rest as it is. */
export function messageBytes(message: OutgoingMessage): number {
  if (message.raw) return message.raw.length;
  const text = Buffer.byteLength(message.text ?? '') + Buffer.byteLength(message.html ?? '');
  const attached = message.attachments.reduce((sum, a) => sum + (Buffer.isBuffer(a.content) ? a.content.length : a.content.size), 0);
  return text + Math.ceil((attached * 4) / 3);
}

/**
 * How far the attempt got when it was stopped: `connecting` (waiting for one of the pool's connections, or a new
 * connection's greeting, EHLO, STARTTLS, AUTH: nodemailer tells no more), in the `session` (MAIL FROM, RCPT,
 * DATA, the message being written), or `written`: every byte and the final dot were sent and the server's reply
 * never came, so it may have delivered the mail (as when a connection drops before the "250").
 */
export type SendStage = 'connecting' | 'session' | 'written';

const what: Record<SendStage, string> = {
  connecting: 'the session never reached the message: the server stopped answering while Juniper connected or signed in, or every connection to it was held by sends it did not finish',
  session: 'the server stopped answering mid-session, before the whole message was written',
  written: 'the whole message was written, but the server never gave its final reply, so it may have delivered it and the mail may arrive twice',
};

/** JUNIPER_ERR_SEND_DEADLINE for an attempt stopped at its deadline; classifySendError() retries it. */
export function deadlineExceeded(server: string, at: string, deadlineMs: number, stage: SendStage): AppError {
  const seconds = Math.round(deadlineMs / 100) / 10;
  return new AppError('JUNIPER_ERR_SEND_DEADLINE', `Outgoing server "${server}" (${at}) did not finish sending the mail within ${seconds} s: ${what[stage]}. Juniper retries later.`, {
    details: { stage, deadlineMs },
  });
}

/**
 * JUNIPER_ERR_SEND_CANCELLED for an attempt its caller stopped (the dispatcher giving a stalled server's mail
 * back to the queue). `written` says whether the server may have received the whole message.
 */
export function sendCancelled(server: string, stage: SendStage): AppError {
  return new AppError('JUNIPER_ERR_SEND_CANCELLED', `Sending through outgoing server "${server}" was stopped by Juniper (${what[stage]}).`, { details: { stage } });
}
