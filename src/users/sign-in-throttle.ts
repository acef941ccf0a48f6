// Slows password guessing: after 10 failed sign-ins for one login or one address within 15 minutes,
// further attempts are refused until the window passes. In memory: one process serves the web UI.
const WINDOW_MS = 15 * 60 * 1000;
const MAX_FAILURES = 10;

export class SignInThrottle {
  private readonly failures = new Map<string, number[]>();

  constructor(private readonly now: () => number = Date.now) {}

  blocked(login: string, ip: string): boolean {
    return this.count(`l:${login.toLowerCase()}`) >= MAX_FAILURES || this.count(`i:${ip}`) >= MAX_FAILURES;
  }

  fail(login: string, ip: string): void {
    for (const key of [`l:${login.toLowerCase()}`, `i:${ip}`]) {
      const list = this.recent(key);
      list.push(this.now());
      this.failures.set(key, list);
    }
  }

  succeed(login: string): void {
    this.failures.delete(`l:${login.toLowerCase()}`);
  }

  private count(key: string): number {
    return this.recent(key).length;
  }

  private recent(key: string): number[] {
    const since = this.now() - WINDOW_MS;
    const list = (this.failures.get(key) ?? []).filter((t) => t > since);
    if (list.length === 0) this.failures.delete(key);
    return list;
  }
}
