// One-line hooks for the dispatcher (src/outgoing/dispatcher.ts): each call counts one outcome.
import { mailsFailed, mailsRetried, mailsSent, sendDuration } from './process-metrics.js';

const label = (serverId: number | null) => (serverId === null ? 'none' : String(serverId));

/** Times one transport send into juniper_send_duration_seconds, whatever its outcome. */
export async function timedSend<T>(serverId: number, send: () => Promise<T>): Promise<T> {
  const end = sendDuration.startTimer({ server_id: label(serverId) });
  try {
    return await send();
  } finally {
    end();
  }
}

export function countSent(serverId: number): void {
  mailsSent.inc({ server_id: label(serverId) });
}

/**
 * A failed send, counted the way the dispatcher decided it: `fail`, or a `retry` past the last attempt, is
 * failed for good; `wait` and other `retry` put the mail back.
 */
export function countSendFailure(serverId: number | null, action: string, lastAttempt: boolean): void {
  if (action === 'fail' || (action !== 'wait' && lastAttempt)) mailsFailed.inc({ server_id: label(serverId) });
  else mailsRetried.inc({ server_id: label(serverId), reason: action === 'wait' ? 'wait' : 'retry' });
}
