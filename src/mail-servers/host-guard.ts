// The address policy of host-policy.ts applied where Juniper saves or connects to a mail server owned by a
// user other than an admin: resolve once, check every address, and hand back the checked address to connect
// to, so a DNS answer that changes between the check and the connection (rebinding) cannot reach inside.
// Admin-owned and shared servers are not checked: admins may point them anywhere.
import dns from 'node:dns/promises';
import os from 'node:os';
import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import { ALLOW_LIST_PARAMETER, bareHost, decideHost, ownAddressKey, parseAllowList, parseIp, type AllowEntry } from './host-policy.js';

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

  private async allowList(): Promise<AllowEntry[]> {
    const row = await this.db.selectFrom('parameters').select('value').where('key', '=', ALLOW_LIST_PARAMETER).executeTakeFirst();
    try {
      return parseAllowList(row?.value);
    } catch {
      // A value edited into the table that no longer parses permits nothing.
      return [];
    }
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
    const addresses = await this.lookup(host);
    const decision = decideHost(host, addresses, await this.allowList(), what, ownRefused ? this.ownAddresses() : undefined);
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
   * At create and update: a server of a non-admin owner must point at a public address (or one the
   * allow-list names). A host that does not resolve is refused too, as it cannot be checked.
   */
  async assertMaySave(host: string, ownerUserId: number | null, what: string): Promise<void> {
    if (!(await this.applies(ownerUserId))) return;
    try {
      await this.check(host, what, true);
    } catch (err) {
      if (!(err instanceof HostLookupError)) throw err;
      throw new AppError('JUNIPER_ERR_VALIDATION', `${err.message} Check the host name: a server of a user other than an admin must resolve to a public address.`, {
        details: { field: 'host' },
      });
    }
  }

  /**
   * At every connection: the address to connect to, checked now; undefined when the server is not held to the
   * policy. `prefer` (the address a pool already connects to) is kept while the name still answers it: a name
   * whose answers rotate (smtp.office365.com) would otherwise rebuild the pool at every send.
   */
  async connectTarget(server: { host: string; owner_user_id: number | null }, what: string, prefer?: string): Promise<ConnectTarget | undefined> {
    if (!(await this.applies(server.owner_user_id))) return undefined;
    return this.check(server.host, what, true, prefer);
  }
}
