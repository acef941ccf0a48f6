// The address policy of host-policy.ts and the port policy of port-policy.ts applied where Juniper saves or
// connects to a mail server owned by a user other than an admin: the port first (before any lookup, so its
// refusal says nothing about the host), then resolve once, check every address, and hand back the checked
// address to connect to, so a DNS answer that changes between the check and the connection (rebinding) cannot
// reach inside. Admin-owned and shared servers are not checked: admins may point them anywhere.
import dns from 'node:dns/promises';
import os from 'node:os';
import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.js';
import { AppError, isAppError } from '../lib/errors.js';
import { ALLOW_LIST_PARAMETER, bareHost, decideHost, ownAddressKey, parseAllowList, parseIp, type AllowEntry } from './host-policy.js';
import { decidePort, DEFAULT_ALLOWED_PORTS, parsePortList, PORTS_PARAMETER, type PortRange } from './port-policy.js';

/** Every address a host name resolves to (tests give their own, to simulate rebinding without DNS). */
export type HostResolver = (host: string) => Promise<string[]>;

export const systemResolver: HostResolver = async (host) => (await dns.lookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** The addresses of this machine's interfaces, read at each check (they change with DHCP, a VPN, a failover IP). */
export const machineAddresses = (): ReadonlySet<string> =>
  new Set(Object.values(os.networkInterfaces()).flatMap((list) => (list ?? []).map((i) => ownAddressKey(i.address))));

/** Where to open the socket, and the name TLS must verify (SNI and certificate) when it differs. */
export interface ConnectTarget {
  address: string;
  servername?: string;
}

/** A failed lookup, shaped like nodemailer's DNS error so the send decision and messages treat it as one. */
export class HostLookupError extends Error {
  readonly code = 'EDNS';
  constructor(
    readonly host: string,
    readonly originalCode: string,
    options: { cause: unknown },
  ) {
    super(`The host name ${host} could not be resolved (${originalCode}).`, options);
  }
}

/** A refusal of the address or port policy: made before any connection, so it is the connect stage that failed. */
export const isPolicyRefusal = (err: unknown): boolean => isAppError(err) && (err.code === 'JUNIPER_ERR_HOST_NOT_ALLOWED' || err.code === 'JUNIPER_ERR_PORT_NOT_ALLOWED');

// A value edited into the table that no longer parses counts as unset: no private host, the mail ports.
function orUnset<T>(parse: () => T, unset: T): T {
  try {
    return parse();
  } catch {
    return unset;
  }
}

export class HostGuard {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly resolver: HostResolver = systemResolver,
    private readonly ownAddresses: () => ReadonlySet<string> = machineAddresses,
  ) {}

  /** True when the owner is a user other than an admin: only their servers are held to the policy. */
  async applies(ownerUserId: number | null): Promise<boolean> {
    if (ownerUserId === null) return false;
    const owner = await this.db.selectFrom('users').select('role').where('id', '=', ownerUserId).executeTakeFirst();
    // An owner that no longer exists grants nothing.
    return owner?.role !== 'admin';
  }

  /** Both parameters in one read: a user's server is checked at every send. */
  private async policy(): Promise<{ hosts: AllowEntry[]; ports: PortRange[] }> {
    const rows = await this.db.selectFrom('parameters').select(['key', 'value']).where('key', 'in', [ALLOW_LIST_PARAMETER, PORTS_PARAMETER]).execute();
    const value = (key: string) => rows.find((r) => r.key === key)?.value;
    return {
      hosts: orUnset(() => parseAllowList(value(ALLOW_LIST_PARAMETER)), []),
      ports: orUnset(() => parsePortList(value(PORTS_PARAMETER) ?? DEFAULT_ALLOWED_PORTS), parsePortList(DEFAULT_ALLOWED_PORTS)),
    };
  }

  /** The ports the servers held to the policy may use, as every connection reads them (`juniper doctor` too). */
  async allowedPorts(): Promise<PortRange[]> {
    return (await this.policy()).ports;
  }

  /** JUNIPER_ERR_PORT_NOT_ALLOWED naming the server, the port and the parameter, when the port is not on the list. */
  private checkPort(port: number, ports: readonly PortRange[], what: string): void {
    // `what` starts with the kind's noun ("incoming mail server …", "outgoing mail server …"), as every caller says it.
    const protocol = what.startsWith('incoming') ? 'imap' : what.startsWith('outgoing') ? 'smtp' : undefined;
    const decision = decidePort(port, ports, what, protocol);
    if (!decision.ok) throw new AppError('JUNIPER_ERR_PORT_NOT_ALLOWED', decision.reason, { details: { field: 'port', port, parameter: PORTS_PARAMETER } });
  }

  private async lookup(host: string): Promise<string[]> {
    const bare = bareHost(host);
    if (parseIp(bare)) return [bare];
    try {
      return await this.resolver(bare);
    } catch (err) {
      const code = typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : 'ENOTFOUND';
      throw new HostLookupError(host, code, { cause: err });
    }
  }

  /**
   * The checked address for `host`, or JUNIPER_ERR_HOST_NOT_ALLOWED naming host and parameter. `ownRefused`: this
   * machine's own public addresses count as private too (a user's mail server); a webhook, whoever made it, may
   * call an app on the same machine by its public name.
   */
  async check(host: string, what: string, ownRefused = false, prefer?: string): Promise<ConnectTarget> {
    return this.checkHost((await this.policy()).hosts, host, what, ownRefused, prefer);
  }

  private async checkHost(list: readonly AllowEntry[], host: string, what: string, ownRefused: boolean, prefer?: string): Promise<ConnectTarget> {
    const addresses = await this.lookup(host);
    const decision = decideHost(host, addresses, list, what, ownRefused ? this.ownAddresses() : undefined);
    if (!decision.ok) {
      throw new AppError('JUNIPER_ERR_HOST_NOT_ALLOWED', decision.reason, {
        details: { field: 'host', host: host.trim(), ...(parseIp(bareHost(host)) ? { address: decision.address } : {}), parameter: ALLOW_LIST_PARAMETER },
      });
    }
    const name = bareHost(host);
    // Every answer passed the check: the one in use stays while it is still among them (rotating answers).
    const address = prefer !== undefined && addresses.includes(prefer) ? prefer : decision.address;
    return parseIp(name) ? { address } : { address, servername: name };
  }

  /**
   * At create and update: a server of a non-admin owner must use an allowed port and point at a public address
   * (or one the allow-list names). A host that does not resolve is refused too, as it cannot be checked.
   */
  async assertMaySave(endpoint: { host: string; port: number }, ownerUserId: number | null, what: string): Promise<void> {
    if (!(await this.applies(ownerUserId))) return;
    const { hosts, ports } = await this.policy();
    this.checkPort(endpoint.port, ports, what);
    try {
      await this.checkHost(hosts, endpoint.host, what, true);
    } catch (err) {
      if (!(err instanceof HostLookupError)) throw err;
      throw new AppError('JUNIPER_ERR_VALIDATION', `${err.message} Check the host name: a server of a user other than an admin must resolve to a public address.`, {
        details: { field: 'host' },
      });
    }
  }

  /**
   * At every connection: the address to connect to, checked now; undefined when the server is not held to the
   * policy. The port is checked too, so a server saved before the port policy, or before an admin narrowed the
   * list, is refused at use. `prefer` (the address a pool already connects to) is kept while the name still
   * answers it: a name whose answers rotate (smtp.office365.com) would otherwise rebuild the pool at every send.
   */
  async connectTarget(server: { host: string; port: number; owner_user_id: number | null }, what: string, prefer?: string): Promise<ConnectTarget | undefined> {
    if (!(await this.applies(server.owner_user_id))) return undefined;
    const { hosts, ports } = await this.policy();
    this.checkPort(server.port, ports, what);
    return this.checkHost(hosts, server.host, what, true, prefer);
  }
}
