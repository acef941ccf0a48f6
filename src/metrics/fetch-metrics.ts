// One-line hooks for the fetcher (src/incoming/fetcher.ts); no-ops in a process that loaded no metrics.
import { processMetrics } from './process-metrics.js';

/** `stopped`: a run ended on purpose (a shutdown), neither ok nor failed; what it stored counts as stored. */
export function countFetchRun(serverId: number, counts: { stored: number; duplicates: number; quarantined: number }, ms: number, outcome: 'ok' | 'stopped' = 'ok'): void {
  const m = processMetrics();
  if (!m) return;
  const { fetchRuns, fetchDuration, fetchedMessages } = m;
  const server_id = String(serverId);
  fetchRuns.inc({ server_id, outcome });
  fetchDuration.observe({ server_id }, ms / 1000);
  if (counts.stored) fetchedMessages.inc({ server_id, result: 'stored' }, counts.stored);
  if (counts.duplicates) fetchedMessages.inc({ server_id, result: 'duplicate' }, counts.duplicates);
  if (counts.quarantined) fetchedMessages.inc({ server_id, result: 'quarantined' }, counts.quarantined);
}

export function countFetchFailure(serverId: number, ms: number): void {
  const m = processMetrics();
  if (!m) return;
  const server_id = String(serverId);
  m.fetchRuns.inc({ server_id, outcome: 'failed' });
  m.fetchDuration.observe({ server_id }, ms / 1000);
}
