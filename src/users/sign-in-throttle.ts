// Slows password guessing without letting anyone lock a named user out from elsewhere (DESIGN §10, issue 8):
// - a (login, client address) pair is refused after 10 failures in 15 minutes: the guesser at one address is
//   stopped, the real user at another address is not;
// - one client address is refused after 100 failures in 15 minutes, whatever logins it tries (a guesser
//   cycling through names);
// - failures of one login from every address together only slow its sign-ins down: from the 4th failure in the
//   window each attempt waits 125 ms, doubling up to 2 s. Distributed guessing of one password gets slow, the
//   real user still gets in, a little later.
// The client address is what Fastify reports: the peer, or X-Forwarded-For's client behind a trusted proxy
// (JUNIPER_TRUST_PROXY). In memory: one process serves the web UI. Bounded: at most MAX_KEYS counters.
export const WINDOW_MS = 15 * 60 * 1000;
export const MAX_PAIR_FAILURES = 10;
export const MAX_ADDRESS_FAILURES = 100;
const SLOW_AFTER = 3;
const FIRST_DELAY_MS = 125;
export const MAX_DELAY_MS = 2000;
const MAX_KEYS = 10_000;

export type ThrottleVerdict = { refused: true; reason: 'pair' | 'address' } | { refused: false; delayMs: number };

/** How long a sign-in for a login waits, given its failures (from every address) in the window. */
export function delayForFailures(failures: number): number {
  if (failures <= SLOW_AFTER) return 0;
  return Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (failures - SLOW_AFTER - 1));
}

export class SignInThrottle {
  private readonly failures = new Map<string, number[]>();

  constructor(private readonly now: () => number = Date.now) {}

  check(login: string, address: string): ThrottleVerdict {
    const name = login.toLowerCase();
    if (this.count(pairKey(name, address)) >= MAX_PAIR_FAILURES) return { refused: true, reason: 'pair' };
    if (this.count(addressKey(address)) >= MAX_ADDRESS_FAILURES) return { refused: true, reason: 'address' };
    return { refused: false, delayMs: delayForFailures(this.count(loginKey(name))) };
  }

  fail(login: string, address: string): void {
    const name = login.toLowerCase();
    for (const key of [pairKey(name, address), addressKey(address), loginKey(name)]) {
      const list = this.recent(key);
      list.push(this.now());
      this.failures.delete(key);
      this.failures.set(key, list);
    }
    this.bound();
  }

  /**
   * A right password clears that login's counters at that address and its slow-down, and takes back the attempt
   * fail() counted for the address in advance (sign-ins of a busy office behind one address are not failures);
   * the address's earlier failures stay.
   */
  succeed(login: string, address: string): void {
    const name = login.toLowerCase();
    this.failures.delete(pairKey(name, address));
    this.failures.delete(loginKey(name));
    const attempts = this.recent(addressKey(address));
    attempts.pop();
    if (attempts.length) this.failures.set(addressKey(address), attempts);
    else this.failures.delete(addressKey(address));
  }

  /**
   * A new password set by an admin: the guesses counted against the old one, from every address, no longer
   * matter. The addresses' own counters stay (a guesser's address stays slowed for its other logins).
   */
  forgetLogin(login: string): void {
    const name = login.toLowerCase();
    this.failures.delete(loginKey(name));
    const pairEnd = `\u0000${name}`;
    for (const key of [...this.failures.keys()]) if (key.startsWith('p:') && key.endsWith(pairEnd)) this.failures.delete(key);
  }

  /** Counters kept (for the bound's test). */
  get size(): number {
    return this.failures.size;
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

  // Guessers choose the keys (logins × addresses): past the cap the least recently failed counters go. Map
  // order is insertion order and fail() re-inserts what it touches, so they are the first ones, expired ones
  // among them, and dropping them costs what is dropped. Filtering every counter for expiry first, as this
  // once did, cost each failed sign-in a pass over all 10,000 on the thread that serves every request (a
  // guesser inventing logins got 12,000 failures to take 14 s of CPU).
  private bound(): void {
    for (const key of this.failures.keys()) {
      if (this.failures.size <= MAX_KEYS) break;
      this.failures.delete(key);
    }
  }
}

/**
 * The address a counter is kept for: an IPv6 client is counted by its /64, the block one subscriber gets (it
 * could otherwise take a fresh address for every attempt); IPv4 and IPv4-mapped addresses as they are.
 */
export function addressBucket(address: string): string {
  const ip = address.toLowerCase();
  if (!ip.includes(':') || ip.startsWith('::ffff:')) return ip.replace(/^::ffff:/, '');
  const [head = '', tail = ''] = ip.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

const pairKey = (login: string, address: string) => `p:${addressBucket(address)}\u0000${login}`;
const addressKey = (address: string) => `a:${addressBucket(address)}`;
const loginKey = (login: string) => `l:${login}`;
