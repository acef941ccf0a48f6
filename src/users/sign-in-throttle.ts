// Slows password guessing without letting anyone lock a named user out from elsewhere (DESIGN §10, issue 8):
// - a (login, client address) pair is refused after 10 failures in 15 minutes: the guesser at one address is
//   stopped, the real user at another address is not;
// - one client address is refused after 100 failures in 15 minutes, whatever logins it tries (a guesser
//   cycling through names);
// - failures of one login from every address together only slow its sign-ins down: from the 4th failure in the
//   window each attempt waits 125 ms, doubling up to 2 s. Distributed guessing of one password gets slow, the
//   real user still gets in, a little later.
// The client address is what Fastify reports: the peer, or X-Forwarded-For's client behind a trusted proxy
// (JUNIPER_TRUST_PROXY). In memory: one process serves the web UI. Bounded: at most MAX_KEYS counters of each
// kind (pairs, addresses, logins), kept apart so that one kind cannot push out another (see bound).
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
  // One map per kind of counter, chosen by the key's first letter (see pairKey, addressKey, loginKey), and pairs
  // that refuse (MAX_PAIR_FAILURES or more) in a map of their own, `r` (see bound).
  private readonly kinds = { p: new Map<string, number[]>(), r: new Map<string, number[]>(), a: new Map<string, number[]>(), l: new Map<string, number[]>() };

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
      this.mapOf(key).delete(key);
      const map = this.mapFor(key, list.length >= MAX_PAIR_FAILURES);
      map.set(key, list);
      bound(map);
    }
  }

  /**
   * A right password clears that login's counters at that address and its slow-down, and takes back the attempt
   * fail() counted for the address in advance (sign-ins of a busy office behind one address are not failures);
   * the address's earlier failures stay.
   */
  succeed(login: string, address: string): void {
    const name = login.toLowerCase();
    this.mapOf(pairKey(name, address)).delete(pairKey(name, address));
    this.kinds.l.delete(loginKey(name));
    const attempts = this.recent(addressKey(address));
    attempts.pop();
    if (attempts.length) this.kinds.a.set(addressKey(address), attempts);
    else this.kinds.a.delete(addressKey(address));
  }

  /**
   * A new password set by an admin: the guesses counted against the old one, from every address, no longer
   * matter. The addresses' own counters stay (a guesser's address stays slowed for its other logins).
   */
  forgetLogin(login: string): void {
    const name = login.toLowerCase();
    this.kinds.l.delete(loginKey(name));
    const pairEnd = `\u0000${name}`;
    for (const pairs of [this.kinds.p, this.kinds.r]) for (const key of [...pairs.keys()]) if (key.endsWith(pairEnd)) pairs.delete(key);
  }

  /** Counters kept, of every kind (for tests). */
  get size(): number {
    const { pairs, refusingPairs, addresses, logins } = this.sizes;
    return pairs + refusingPairs + addresses + logins;
  }

  /** Counters kept, by kind (for the bound's tests). */
  get sizes(): { pairs: number; refusingPairs: number; addresses: number; logins: number } {
    return { pairs: this.kinds.p.size, refusingPairs: this.kinds.r.size, addresses: this.kinds.a.size, logins: this.kinds.l.size };
  }

  /** The map that holds `key` now. */
  private mapOf(key: string): Map<string, number[]> {
    return this.mapFor(key, this.kinds.r.has(key));
  }

  /** The map for `key`: its kind's, or `r` for a pair that refuses. */
  private mapFor(key: string, refusing: boolean): Map<string, number[]> {
    return refusing && key.startsWith('p:') ? this.kinds.r : this.kinds[key[0] as 'p' | 'a' | 'l'];
  }

  private count(key: string): number {
    return this.recent(key).length;
  }

  private recent(key: string): number[] {
    const since = this.now() - WINDOW_MS;
    const map = this.mapOf(key);
    const list = (map.get(key) ?? []).filter((t) => t > since);
    if (list.length === 0) map.delete(key);
    return list;
  }
}

/**
 * Past MAX_KEYS counters in a map, the least recently failed go. Map order is insertion order and fail() re-inserts
 * what it touches, so they are the first ones and dropping them costs only what is dropped (a pass over every
 * counter per failure cost 14 s of the request thread's CPU for 12,000 invented logins). Each kind, and refusing
 * pairs apart from the rest, has its own map, so a flood of invented logins pushes out only counters below their
 * limit: pushing out a refusing pair takes ~1,000 addresses (each holds at most 10 before its own 100 failures
 * refuse it), an address counter 10,000. In one shared map 60 addresses took turns to get 12,000 guesses at one
 * login in a window, against the 600 the limits allow.
 */
function bound(map: Map<string, number[]>): void {
  for (const key of map.keys()) {
    if (map.size <= MAX_KEYS) break;
    map.delete(key);
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
