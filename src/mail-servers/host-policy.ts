// Which addresses a mail server owned by a non-admin user may point at (issue 8, SSRF): the user controls
// the host, and Test Connection, Test & Confirm, the dispatcher and the fetch scheduler connect there from
// inside the network Juniper runs in. Pure: the resolver and the connection live in host-guard.ts.

export type AllowEntry = { kind: 'host'; name: string } | { kind: 'ip'; version: 4 | 6; bits: bigint; prefix: number; text: string };

export const ALLOW_LIST_PARAMETER = 'mail.server.allowed_private_hosts';

/** A host as the user typed it, as the resolver and the allow-list compare it: no brackets, no trailing dot, lower case. */
export function bareHost(host: string): string {
  return host.trim().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '').toLowerCase();
}

function parseIPv4(text: string): bigint | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let out = 0n;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return undefined;
    out = (out << 8n) | BigInt(p);
  }
  return out;
}

function parseIPv6(input: string): bigint | undefined {
  let text = input.replace(/%.*$/, '');
  // A trailing dotted quad (::ffff:127.0.0.1) stands for the last two groups.
  const quad = /^(.*:)([0-9.]+)$/.exec(text);
  if (quad && quad[2]!.includes('.')) {
    const v4 = parseIPv4(quad[2]!);
    if (v4 === undefined) return undefined;
    text = `${quad[1]}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groups = (s: string): string[] | undefined => {
    if (s === '') return [];
    const g = s.split(':');
    return g.every((x) => /^[0-9a-f]{1,4}$/i.test(x)) ? g : undefined;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...Array<string>(missing).fill('0'), ...tail];
  return all.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** An IP address as a number with its version, or undefined when the text is not one. */
export function parseIp(text: string): { version: 4 | 6; bits: bigint } | undefined {
  const bare = bareHost(text);
  const v4 = parseIPv4(bare);
  if (v4 !== undefined) return { version: 4, bits: v4 };
  if (!bare.includes(':')) return undefined;
  const v6 = parseIPv6(bare);
  return v6 === undefined ? undefined : { version: 6, bits: v6 };
}

const inRange = (bits: bigint, width: number, base: bigint, prefix: number): boolean => bits >> BigInt(width - prefix) === base >> BigInt(width - prefix);

const v4 = (cidr: string): [bigint, number] => {
  const [a, p] = cidr.split('/');
  return [parseIPv4(a!)!, Number(p)];
};
const v6 = (cidr: string): [bigint, number] => {
  const [a, p] = cidr.split('/');
  return [parseIPv6(a!)!, Number(p)];
};

// What is refused and why, in the words the error message uses. Order matters only for the name shown.
const IPV4_REFUSED: [bigint, number, string][] = (
  [
    ['0.0.0.0/8', 'unspecified, "this network"'],
    ['127.0.0.0/8', 'loopback'],
    ['10.0.0.0/8', 'private, RFC 1918'],
    ['172.16.0.0/12', 'private, RFC 1918'],
    ['192.168.0.0/16', 'private, RFC 1918'],
    ['100.64.0.0/10', 'carrier-grade NAT, RFC 6598'],
    ['169.254.0.0/16', 'link-local, where cloud metadata services answer'],
    ['192.0.0.0/24', 'reserved for IETF protocols'],
    ['192.0.2.0/24', 'reserved for documentation'],
    ['198.51.100.0/24', 'reserved for documentation'],
    ['203.0.113.0/24', 'reserved for documentation'],
    ['198.18.0.0/15', 'reserved for benchmarking'],
    ['224.0.0.0/4', 'multicast'],
    ['240.0.0.0/4', 'reserved, broadcast included'],
  ] as const
).map(([cidr, why]) => [...v4(cidr), why]);

const IPV6_REFUSED: [bigint, number, string][] = (
  [
    ['::/128', 'unspecified'],
    ['::1/128', 'loopback'],
    ['64:ff9b:1::/48', 'local-use NAT64'],
    ['100::/64', 'discard-only'],
    ['2001:db8::/32', 'reserved for documentation'],
    ['fc00::/7', 'unique-local, private'],
    ['fe80::/10', 'link-local'],
    ['fec0::/10', 'site-local, private'],
    ['ff00::/8', 'multicast'],
  ] as const
).map(([cidr, why]) => [...v6(cidr), why]);

// IPv6 forms that carry an IPv4 address, which the network may deliver to that IPv4 address.
const EMBEDDING: [bigint, number, (bits: bigint) => bigint, string][] = [
  [...v6('::ffff:0:0/96'), (b) => b & 0xffffffffn, 'IPv4-mapped'],
  // ::ffff:0:a.b.c.d (RFC 2765, SIIT): a stateless translator on the path delivers it to a.b.c.d.
  [...v6('::ffff:0:0:0/96'), (b) => b & 0xffffffffn, 'IPv4-translated'],
  [...v6('::/96'), (b) => b & 0xffffffffn, 'IPv4-compatible'],
  [...v6('64:ff9b::/96'), (b) => b & 0xffffffffn, 'NAT64'],
  [...v6('2002::/16'), (b) => (b >> 80n) & 0xffffffffn, '6to4'],
];

const v4Text = (bits: bigint): string => [24n, 16n, 8n, 0n].map((s) => Number((bits >> s) & 0xffn)).join('.');

/**
 * How an address is compared with this machine's own (machineAddresses): by its bits, so that every way of
 * writing it (expanded, upper-case hex, IPv4-mapped, -translated or -compatible in dotted or hex form) is the same key.
 */
export function ownAddressKey(address: string): string {
  const ip = parseIp(address.replace(/%.*$/, ''));
  if (!ip) return address.toLowerCase();
  if (ip.version === 4) return `4:${ip.bits.toString(16)}`;
  // ::ffff:a.b.c.d, ::ffff:0:a.b.c.d and ::a.b.c.d reach the IPv4 address a.b.c.d.
  const high = ip.bits >> 32n;
  if (high === 0xffffn || high === 0xffff0000n || (high === 0n && ip.bits > 1n)) return `4:${(ip.bits & 0xffffffffn).toString(16)}`;
  return `6:${ip.bits.toString(16)}`;
}

/** Why an address is not a public unicast one (e.g. 'loopback'), or null when it is public. */
export function refusedKind(address: string): string | null {
  const ip = parseIp(address);
  if (!ip) return 'not an IP address';
  if (ip.version === 4) return IPV4_REFUSED.find(([base, prefix]) => inRange(ip.bits, 32, base, prefix))?.[2] ?? null;
  const direct = IPV6_REFUSED.find(([base, prefix]) => inRange(ip.bits, 128, base, prefix));
  if (direct) return direct[2];
  for (const [base, prefix, extract, form] of EMBEDDING) {
    if (!inRange(ip.bits, 128, base, prefix)) continue;
    const inner = refusedKind(v4Text(extract(ip.bits)));
    if (inner) return `${form} ${inner}`;
  }
  return null;
}

/**
 * The allow-list as an admin wrote it: comma-separated host names, IP addresses and CIDR ranges.
 * Throws a message naming the first entry that is none of these.
 */
export function parseAllowList(text: string | null | undefined): AllowEntry[] {
  if (!text) return [];
  return text
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '')
    .map((entry): AllowEntry => {
      const [addr, prefixText, extra] = entry.split('/');
      const ip = parseIp(addr!);
      if (ip) {
        const width = ip.version === 4 ? 32 : 128;
        const prefix = prefixText === undefined ? width : /^[0-9]{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
        if (extra !== undefined || !(prefix >= 0 && prefix <= width)) throw new Error(`${JSON.stringify(entry)} has no valid prefix length (0-${width})`);
        return { kind: 'ip', version: ip.version, bits: ip.bits, prefix, text: entry };
      }
      const name = bareHost(entry);
      if (prefixText !== undefined || !/^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$/.test(name)) {
        throw new Error(`${JSON.stringify(entry)} is neither a host name, an IP address nor a CIDR range`);
      }
      return { kind: 'host', name };
    });
}

/** The allow-list entry that admits this host or address, if any. */
export function allowedBy(host: string, address: string, list: readonly AllowEntry[]): AllowEntry | undefined {
  const name = bareHost(host);
  const ip = parseIp(address);
  return list.find((e) => {
    if (e.kind === 'host') return e.name === name;
    if (!ip) return false;
    // An IPv4 entry also admits the IPv4-mapped IPv6 form of its addresses.
    const bits = e.version === 4 && ip.version === 6 && inRange(ip.bits, 128, ...v6('::ffff:0:0/96')) ? ip.bits & 0xffffffffn : ip.bits;
    const version = bits !== ip.bits ? 4 : ip.version;
    return version === e.version && inRange(bits, e.version === 4 ? 32 : 128, e.bits, e.prefix);
  });
}

export type HostDecision = { ok: true; address: string } | { ok: false; address: string; kind: string; reason: string };

/**
 * Whether a server may connect to `host`, given every address it resolved to: each must be public or
 * admitted by the allow-list (a name that answers one public and one private address is refused, as the
 * connection could go to either). The first address is the one to connect to.
 */
export function decideHost(host: string, addresses: readonly string[], list: readonly AllowEntry[], what = 'mail server', own: ReadonlySet<string> = new Set()): HostDecision {
  const shown = host.trim();
  if (addresses.length === 0) {
    return { ok: false, address: '', kind: 'unresolved', reason: `The ${what} host ${shown} did not resolve to any address: check the host name.` };
  }
  for (const address of addresses) {
    // A public address of this machine's own interfaces (a VPS's) reaches whatever listens on all interfaces
    // here (the database, an admin port) as loopback would.
    const kind = refusedKind(address) ?? (own.has(ownAddressKey(address)) ? 'an address of this machine' : null);
    if (kind === null || allowedBy(host, address, list)) continue;
    // For a name, neither the address nor its kind: the user saving it would learn what internal names resolve
    // to (split-horizon DNS), one refusal at a time. An address typed in is theirs already.
    const resolved = parseIp(host) ? `${shown} is not a public address (${kind})` : `${shown} resolves to an address that is not public`;
    return {
      ok: false,
      address,
      kind,
      reason:
        `The ${what} host ${resolved}: a server of a user other than an admin may only reach public addresses. ` +
        `An admin can permit it by adding the host or address to the system parameter ${ALLOW_LIST_PARAMETER}.`,
    };
  }
  return { ok: true, address: addresses[0]! };
}
