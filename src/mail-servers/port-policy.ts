// Which ports a mail server owned by a non-admin user may use (the port half of issue 8): with any port of any
// public host, Test Connection, Test & Confirm, the dispatcher and the fetcher would be a port scanner of the
// internet from this company's address, telling open, closed and filtered ports apart by the error and reading
// banners. Pure: host-guard.ts reads the parameter and applies it before any lookup or connection.
//
// One list for both kinds, not one per protocol: what a scanner gains is the set of ports it can reach, and a
// port open to SMTP servers is reached by them whatever IMAP may do; two lists would double what an admin must
// keep without narrowing that set.

export const PORTS_PARAMETER = 'mail.server.allowed_ports';

/** SMTP 25, 465, 587, 2525 and IMAP 143, 993: every port a real mail provider asks for. */
export const DEFAULT_ALLOWED_PORTS = '25, 143, 465, 587, 993, 2525';

export interface PortRange {
  from: number;
  to: number;
}

function parsePort(text: string, entry: string): number {
  const n = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 65535)) throw new Error(`${JSON.stringify(entry)} is not a port (1-65535) or a range of ports such as 2525-2530`);
  return n;
}

/**
 * The list as an admin wrote it: comma-separated ports and ranges (`587, 2525-2530`), sorted with overlapping and
 * adjacent ranges joined. Throws a message naming the first entry that is neither.
 */
export function parsePortList(text: string | null | undefined): PortRange[] {
  if (!text) return [];
  const ranges = text
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '')
    .map((entry): PortRange => {
      const [a, b, extra] = entry.split('-').map((p) => p.trim());
      const from = parsePort(a!, entry);
      const to = b === undefined ? from : parsePort(b, entry);
      if (extra !== undefined || to < from) throw new Error(`${JSON.stringify(entry)} is not a port (1-65535) or a range of ports such as 2525-2530`);
      return { from, to };
    })
    .sort((x, y) => x.from - y.from);
  const joined: PortRange[] = [];
  for (const r of ranges) {
    const last = joined.at(-1);
    if (last && r.from <= last.to + 1) last.to = Math.max(last.to, r.to);
    else joined.push({ ...r });
  }
  return joined;
}

/** The stored form: `25, 143, 2525-2530`. */
export function formatPortList(ranges: readonly PortRange[]): string {
  return ranges.map((r) => (r.from === r.to ? String(r.from) : `${r.from}-${r.to}`)).join(', ');
}

export function portAllowed(port: number, ranges: readonly PortRange[]): boolean {
  return ranges.some((r) => port >= r.from && port <= r.to);
}

const SMTP_PORTS: readonly (readonly [number, string])[] = [[587, 'SMTP submission'], [465, 'SMTP over TLS']];
const IMAP_PORTS: readonly (readonly [number, string])[] = [[993, 'IMAP over TLS'], [143, 'IMAP']];

/** The usual ports of a protocol (both kinds' first when it is not known) among those allowed, named: `587 (SMTP submission)`. */
export function usualPorts(ranges: readonly PortRange[], protocol?: 'smtp' | 'imap'): string[] {
  return (protocol === 'imap' ? IMAP_PORTS : protocol === 'smtp' ? SMTP_PORTS : [SMTP_PORTS[0]!, IMAP_PORTS[0]!]).filter(([p]) => portAllowed(p, ranges)).map(([p, name]) => `${p} (${name})`);
}

export type PortDecision = { ok: true } | { ok: false; reason: string };

/**
 * Whether a server of a non-admin user may use `port`. The reason names the server (`what`), the port, the ports
 * allowed and what to do; never the host, so the refusal says the same whatever the host is, and is given
 * before the host is looked up or connected to.
 */
export function decidePort(port: number, ranges: readonly PortRange[], what = 'mail server', protocol?: 'smtp' | 'imap'): PortDecision {
  if (portAllowed(port, ranges)) return { ok: true };
  const usual = usualPorts(ranges, protocol);
  const allowed = ranges.length ? formatPortList(ranges) : 'none';
  return {
    ok: false,
    reason:
      `The ${what} uses port ${port}, which a server of a user other than an admin may not use (allowed: ${allowed}). ` +
      `${usual.length ? `Use ${usual.join(' or ')}, or ask` : 'Ask'} an admin to add port ${port} to the system parameter ${PORTS_PARAMETER}.`,
  };
}
