// "Sudo mode" for admins (as GitHub has it): the actions that make a lasting way in for someone (a new user, a
// new admin, an account enabled again, a password set) ask the acting admin's password again; once it was
// confirmed, the same browser session may do them for CONFIRMATION_MS without being asked again. Otherwise
// whoever holds an admin's session for a moment could make themselves an admin account of their own. Kept in
// this process's memory: only `juniper serve` answers browsers, and a restart only asks again.

export const CONFIRMATION_MS = 10 * 60_000;
/** Sessions remembered at most (each confirmation is a password typed, so this bounds nothing real). */
const MAX_SESSIONS = 10_000;

export class RecentConfirmations {
  private readonly until = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  /** The session's admin typed their password: for the next CONFIRMATION_MS it is not asked again. */
  confirm(sessionId: string): number {
    const until = this.now() + CONFIRMATION_MS;
    this.until.delete(sessionId);
    this.until.set(sessionId, until);
    // Oldest first (Map order is insertion order, and confirm re-inserts).
    for (const key of this.until.keys()) {
      if (this.until.size <= MAX_SESSIONS) break;
      this.until.delete(key);
    }
    return until;
  }

  /** Until when the session's confirmation holds, or undefined when it has none (or it ran out). */
  confirmedUntil(sessionId: string): number | undefined {
    const until = this.until.get(sessionId);
    if (until === undefined) return undefined;
    if (until > this.now()) return until;
    this.until.delete(sessionId);
    return undefined;
  }
}
