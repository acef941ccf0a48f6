// When one outgoing server may no longer hold more of a worker's in-flight sends. A worker claims at most
// maxInFlight mails (its leases: what a kill can repeat) and claims again once half of them are done; a server
// that stops answering mid-send (send-deadline.ts) holds its mails until their deadline, and with more than half
// of them it stopped every other server's mail of that worker. So, per server: while none of its sends has
// settled for `stallMs`, it keeps at most `cap` sends (its oldest, which meet their deadline and count an
// attempt), and its newer ones go back to the queue without an attempt, freeing their leases for other servers'
// mails. A server whose sends keep settling is never capped: a healthy server's bulk flows as before.

/** How long without any of a server's sends settling makes it stalled (tests make it small). */
export const STALL_MS = 30_000;

/** A stalled server keeps this many sends per connection (Graph: per concurrent request), like send-slots.ts. */
export const STALLED_SENDS_PER_CONNECTION = 2;

/** A worker's sends of one server: how many are under way, and when one last settled (or the first started). */
export interface ServerProgress {
  inFlight: number;
  progressAt: number;
}

export function isStalled(s: ServerProgress, now: number, stallMs: number): boolean {
  return s.inFlight > 0 && now - s.progressAt >= stallMs;
}

/** Whether another mail of the server may start now; otherwise it goes back to the queue. */
export function admits(s: ServerProgress, cap: number, now: number, stallMs: number): boolean {
  return s.inFlight < cap || !isStalled(s, now, stallMs);
}

/** How many of the server's newest sends to give back now: those over `cap` while it is stalled. */
export function excessOf(s: ServerProgress, cap: number, now: number, stallMs: number): number {
  return isStalled(s, now, stallMs) ? Math.max(0, s.inFlight - cap) : 0;
}
