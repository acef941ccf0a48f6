// One-line hooks for the dispatcher (src/outgoing/dispatcher.ts): each call counts one outcome and, given the
// dispatcher's logger, writes the mail's trail line (op `mail.trail`, step routed / sent / retry / wait / failed,
// with the server's reply), so `grep '"mail":12,'` shows one mail's way at the default level `info`. The
// counting is a no-op in a process that loaded no metrics (process-metrics.ts); the trail lines are written anyway.
import type { Logger } from '../lib/logger.js';
import { processMetrics } from './process-metrics.js';

const label = (serverId: number | null) => (serverId === null ? 'none' : String(serverId));

/** Times one transport send into juniper_send_duration_seconds, whatever its outcome. */
export async function timedSend<T>(serverId: number, send: () => Promise<T>): Promise<T> {
  const end = processMetrics()?.sendDuration.startTimer({ server_id: label(serverId) });
  try {
    return await send();
  } finally {
    end?.();
  }
}

export function countSent(serverId: number, log?: Logger, mailId?: number, reply?: string): void {
  processMetrics()?.mailsSent.inc({ server_id: label(serverId) });
  log?.info({ op: 'mail.trail', mail: mailId, server: serverId, step: 'sent', reply }, `mail ${mailId} sent: ${reply ?? ''}`);
}

export function trailRouted(log: Logger, mailId: number, serverId: number, rule: string | number): void {
  log.info({ op: 'mail.trail', mail: mailId, server: serverId, step: 'routed', rule }, `mail ${mailId} routed to server ${serverId} (rule ${String(rule)})`);
}

/**
 * A failed send, counted the way the dispatcher decided it: `fail`, or a `retry` past the last attempt, is
 * failed for good; `wait` and other `retry` put the mail back.
 */
export function countSendFailure(serverId: number | null, action: string, lastAttempt: boolean, log?: Logger, mailId?: number, reason?: string): void {
  const failed = action === 'fail' || (action !== 'wait' && lastAttempt);
  const m = processMetrics();
  if (failed) m?.mailsFailed.inc({ server_id: label(serverId) });
  else m?.mailsRetried.inc({ server_id: label(serverId), reason: action === 'wait' ? 'wait' : 'retry' });
  const step = failed ? 'failed' : action === 'wait' ? 'wait' : 'retry';
  log?.info({ op: 'mail.trail', mail: mailId, server: serverId, step, reason }, `mail ${mailId} ${step}: ${reason ?? ''}`);
}
