// When a mail whose send failed with a retryable error is tried again (DESIGN §6: exponential with jitter,
// up to 8 attempts over about a day). The wait quadruples rather than doubles: doubling from 30 s gives
// 8 attempts over only ~64 minutes, so any server outage longer than an hour would fail mail for good.
// Quadrupling keeps the quick first retry and still spans a day:
//
//   after attempt   1      2      3       4       5          6          7        8
//   wait            30 s   2 min  8 min   32 min  2 h 8 min  8 h 32 min 12 h     give up
//   elapsed         30 s   2.5 m  10.5 m  42.5 m  2 h 50 m   11 h 22 m  23 h 22 m
//
// Each wait varies by ±20% so mails that failed together (a server outage) do not all return at once.

export const BASE_DELAY_MS = 30_000;
export const GROWTH_FACTOR = 4;
export const MAX_DELAY_MS = 12 * 3600_000;
export const JITTER = 0.2;
/** Attempts (sends tried) before a retryable failure becomes final. */
export const MAX_ATTEMPTS = 8;

/**
 * Milliseconds to wait before the next attempt, after `attempt` attempts have failed (1 after the first).
 * `random` returns [0, 1) as Math.random does; 0.5 gives the nominal delay.
 */
export function retryDelayMs(attempt: number, random: () => number = Math.random): number {
  const exponent = Math.max(0, Math.floor(attempt) - 1);
  const nominal = Math.min(BASE_DELAY_MS * GROWTH_FACTOR ** exponent, MAX_DELAY_MS);
  const factor = 1 + JITTER * (2 * random() - 1);
  return Math.round(nominal * factor);
}

/** True once `attempts` sends were tried and failed: the mail fails with its last reason. */
export function shouldGiveUp(attempts: number): boolean {
  return attempts >= MAX_ATTEMPTS;
}
