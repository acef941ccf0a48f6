// Access tokens for Outlook servers, one per resource (Outlook's SMTP/IMAP, Graph) from the connection's one
// refresh token (connections.ts). A token is reused until 5 minutes before it expires; then exactly one
// refresh runs per connection: concurrent sends in this process share one promise per (server, resource), and
// other processes wait on the connection's database lease (lock_until, held by lock_owner) and then read the new token.
// Only the holder releases the lease: a holder whose lease expired (a paused process, a clock behind) must
// not free the lease another process took over, or a third would refresh with the same refresh token. The refresh token Microsoft
// rotates is always stored. Failures are classified once, here: per-server problems mark the server
// needs_reconnect (refreshing stops until someone reconnects), app-wide ones are recorded for every
// Outlook server, transient ones are retried by the caller.
import crypto from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.js';
import { AppError, isAppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Settings } from '../settings/settings.js';
import type { Vault } from '../vault/index.js';
import type { OAuthAppStatus } from './app-status.js';
import { scopeFor } from './microsoft.js';
import { refreshAccessToken, type TokenSet } from './oauth-client.js';
import { oauthErrorDetails, type OAuthErrorDetails } from './oauth-errors.js';
import { KEEP_ALIVE_MS, tokenNeedsRefresh } from './token-freshness.js';
import type { AccessToken, ServerKind, TokenProvider, TokenResource } from './token-provider.js';
import { accessTokenContext, kindLabel, loadTokenRow, putAccessToken, refreshTokenContext, tokensRefreshedBefore, type TokenRow } from './connections.js';

export interface TokenStoreOptions {
  /**
   * How long a process may hold the refresh lease before others may take over. Longer than
   * refreshTimeoutMs, so a live holder always finishes (or gives up) within its lease and never renews it.
   */
  lockMs: number;
  /** How often a process waiting for another one's refresh looks again. */
  pollMs: number;
  /** The whole token request, body included: a hung identity provider becomes a transient failure. */
  refreshTimeoutMs: number;
  /** How many recent refresh events `events` keeps (default RECENT_EVENTS). */
  keepEvents?: number;
}

/** How many refresh events a store keeps by default: a long-running worker must not grow without bound. */
export const RECENT_EVENTS = 1000;

export const defaultTokenStoreOptions: TokenStoreOptions = { lockMs: 30_000, pollMs: 100, refreshTimeoutMs: 15_000 };

export interface RefreshEvent {
  kind: ServerKind;
  serverId: number;
  resource: TokenResource;
  outcome: 'refreshed' | 'needs_reconnect' | 'app_problem' | 'transient';
}

export class TokenStore implements TokenProvider {
  private readonly inflight = new Map<string, Promise<AccessToken>>();
  /** Names this store's leases (with a fresh suffix per lease); another process never has the same. */
  private readonly instanceId = crypto.randomBytes(6).toString('hex');
  private readonly recentEvents: RefreshEvent[] = [];
  /** Every refresh outcome since start, by outcome, for metrics. */
  readonly counts: Record<RefreshEvent['outcome'], number> = { refreshed: 0, needs_reconnect: 0, app_problem: 0, transient: 0 };

  constructor(
    private readonly deps: {
      db: Kysely<DB>;
      vault: Vault;
      settings: Settings;
      appStatus: OAuthAppStatus;
      log: Logger;
      refresh?: typeof refreshAccessToken;
      now?: () => number;
    },
    private readonly options: TokenStoreOptions = defaultTokenStoreOptions,
  ) {
    if (options.lockMs <= options.refreshTimeoutMs) {
      throw new Error(`TokenStore: lockMs (${options.lockMs}) must exceed refreshTimeoutMs (${options.refreshTimeoutMs}), or a live refresh could outlast its lease.`);
    }
  }

  /** The most recent refresh outcomes of this store (keepEvents of them), oldest first. */
  get events(): readonly RefreshEvent[] {
    return this.recentEvents;
  }

  private record(event: RefreshEvent): void {
    this.counts[event.outcome]++;
    this.recentEvents.push(event);
    const keep = this.options.keepEvents ?? RECENT_EVENTS;
    if (this.recentEvents.length > keep) this.recentEvents.splice(0, this.recentEvents.length - keep);
  }

  private now(): number {
    return this.deps.now?.() ?? Date.now();
  }

  async accessToken(kind: ServerKind, serverId: number, options: { renew?: boolean; resource?: TokenResource } = {}): Promise<AccessToken> {
    const resource = options.resource ?? 'outlook';
    const row = await loadTokenRow(this.deps.db, kind, serverId, resource);
    assertUsable(kind, row);
    if (!options.renew && !tokenNeedsRefresh({ expiresAt: row.access_token_expires_at, hasAccessToken: row.access_token_enc !== null }, this.now(), false)) {
      return this.decrypted(kind, resource, row);
    }
    const key = `${kind}:${serverId}:${resource}`;
    const running = this.inflight.get(key);
    if (running) return running;
    const stale = options.renew ? row.access_token_enc : null;
    const p = this.refreshOnce(kind, serverId, resource, stale).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  /** Refreshes now whatever the expiry (the daily keep-alive that stops 90-day inactivity expiry). */
  async keepAlive(kind: ServerKind, serverId: number): Promise<void> {
    const row = await loadTokenRow(this.deps.db, kind, serverId);
    await this.accessToken(kind, serverId, { renew: row.access_token_enc !== null });
  }

  /**
   * The servers the daily keep-alive refreshes: connected, not archived, and not refreshed for KEEP_ALIVE_MS; none
   * while Microsoft Outlook is uninstalled. No server should use it then (outlook-in-use.ts), but a database from
   * before the uninstall was refused while servers used Outlook may hold connected ones, and asking Microsoft for
   * tokens of an app the admin uninstalled is not what they meant. Installing it again resumes the keep-alive.
   */
  async dueForKeepAlive(): Promise<{ kind: ServerKind; id: number }[]> {
    if (!(await this.deps.settings.outlookInstalled())) return [];
    return tokensRefreshedBefore(this.deps.db, this.now() - KEEP_ALIVE_MS);
  }

  private decrypted(kind: ServerKind, resource: TokenResource, row: TokenRow): AccessToken {
    return { accessToken: this.deps.vault.decrypt(row.access_token_enc!, accessTokenContext(kind, row.id, resource)), expiresAt: row.access_token_expires_at ?? 0 };
  }

  /**
   * One refresh across processes. `stale` is the access token the caller saw refused: a token that differs
   * from it was refreshed by someone else meanwhile and is used as it is.
   */
  private async refreshOnce(kind: ServerKind, id: number, resource: TokenResource, stale: string | null): Promise<AccessToken> {
    const { db } = this.deps;
    const giveUpAt = this.now() + this.options.lockMs + 5_000;
    for (;;) {
      const now = this.now();
      const owner = `${this.instanceId}:${crypto.randomBytes(4).toString('hex')}`;
      const lease = await db
        .updateTable('oauth_connections')
        .set({ lock_until: now + this.options.lockMs, lock_owner: owner })
        .where('server_kind', '=', kind)
        .where('server_id', '=', id)
        .where((eb) => eb.or([eb('lock_until', 'is', null), eb('lock_until', '<', now)]))
        .executeTakeFirst();
      const row = await loadTokenRow(db, kind, id, resource);
      if (Number(lease.numUpdatedRows) === 1) {
        try {
          assertUsable(kind, row);
          if (this.refreshedMeanwhile(row, stale)) return this.decrypted(kind, resource, row);
          return await this.refreshNow(kind, resource, row);
        } finally {
          // Compare-and-set on the owner: if the lease expired and another process took it over, it is theirs.
          const released = await db
            .updateTable('oauth_connections')
            .set({ lock_until: null, lock_owner: null })
            .where('server_kind', '=', kind)
            .where('server_id', '=', id)
            .where('lock_owner', '=', owner)
            .executeTakeFirst();
          if (Number(released.numUpdatedRows) === 0) {
            this.deps.log.warn({ server: id, kind, op: 'oauth.refresh' }, 'the token refresh outlasted its lease and another process took it over');
          }
        }
      }
      assertUsable(kind, row);
      if (this.refreshedMeanwhile(row, stale)) return this.decrypted(kind, resource, row);
      if (this.now() > giveUpAt) {
        throw new AppError('JUNIPER_ERR_OAUTH', `${kindLabel(kind)} server "${row.name}": another process has been refreshing its Outlook token for too long; trying again shortly.`, {
          details: { errorClass: 'transient', transient: true },
        });
      }
      await new Promise((r) => setTimeout(r, this.options.pollMs));
    }
  }

  private refreshedMeanwhile(row: TokenRow, stale: string | null): boolean {
    if (row.access_token_enc === null || row.access_token_enc === stale) return false;
    return !tokenNeedsRefresh({ expiresAt: row.access_token_expires_at, hasAccessToken: true }, this.now(), false);
  }

  private async refreshNow(kind: ServerKind, resource: TokenResource, row: TokenRow): Promise<AccessToken> {
    const { db, vault, settings, appStatus, log } = this.deps;
    const credentials = await settings.outlookCredentials();
    if (!credentials) throw new AppError('JUNIPER_ERR_OUTLOOK_CREDENTIALS');
    const refreshToken = vault.decrypt(row.refresh_token_enc!, refreshTokenContext(kind, row.id));
    let tokens: TokenSet;
    try {
      tokens = await (this.deps.refresh ?? refreshAccessToken)(credentials, { refreshToken, scope: scopeFor(kind, resource, credentials.graphResource) }, { timeoutMs: this.options.refreshTimeoutMs });
    } catch (e) {
      await this.recordFailure(kind, resource, row, e);
      throw e;
    }
    const now = this.now();
    await db.transaction().execute(async (trx) => {
      const updated = await trx
        .updateTable('oauth_connections')
        .set({
          // Microsoft rotates refresh tokens: the new one must replace the old, or the next refresh fails.
          ...(tokens.refreshToken ? { refresh_token_enc: vault.encrypt(tokens.refreshToken, refreshTokenContext(kind, row.id)) } : {}),
          status: 'valid',
          error_code: null,
          error_message: null,
          refreshed_at: now,
        })
        .where('id', '=', row.connectionId!)
        // Only over the tokens this refresh started from: a reconnect or a change of mailbox meanwhile wins.
        .where('refresh_token_enc', '=', row.refresh_token_enc)
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) === 1) {
        await putAccessToken(trx, row.connectionId!, resource, vault.encrypt(tokens.accessToken, accessTokenContext(kind, row.id, resource)), tokens.expiresAt);
      }
    });
    await appStatus.clear();
    this.record({ kind, serverId: row.id, resource, outcome: 'refreshed' });
    log.info({ server: row.id, kind, resource, op: 'oauth.refresh' }, resource === 'graph' ? 'Microsoft Graph access token refreshed' : 'Outlook access token refreshed');
    return { accessToken: tokens.accessToken, expiresAt: tokens.expiresAt };
  }

  private async recordFailure(kind: ServerKind, resource: TokenResource, row: TokenRow, e: unknown): Promise<void> {
    const { db, appStatus, log } = this.deps;
    const details = oauthErrorDetails(e);
    if (!details || !isAppError(e)) return;
    const code = errorCodeOf(details);
    const event = { kind, serverId: row.id, resource };
    if (details.errorClass === 'server') {
      await db
        .updateTable('oauth_connections')
        .set({ status: 'needs_reconnect', error_code: code, error_message: e.message })
        .where('id', '=', row.connectionId!)
        .where('refresh_token_enc', '=', row.refresh_token_enc)
        .execute();
      this.record({ ...event, outcome: 'needs_reconnect' });
      log.warn({ server: row.id, kind, resource, op: 'oauth.refresh', code }, e.message);
    } else if (details.errorClass === 'app') {
      await appStatus.set(code, e.message);
      this.record({ ...event, outcome: 'app_problem' });
      log.error({ server: row.id, kind, resource, op: 'oauth.refresh', code }, e.message);
    } else {
      this.record({ ...event, outcome: 'transient' });
      log.warn({ server: row.id, kind, resource, op: 'oauth.refresh', code }, e.message);
    }
  }
}

/** `AADSTS700082` when Microsoft gave a code, else the OAuth error (`invalid_grant`), else null. */
export function errorCodeOf(details: Pick<OAuthErrorDetails, 'aadsts' | 'oauthError'>): string | null {
  return details.aadsts !== null ? `AADSTS${details.aadsts}` : details.oauthError;
}

function assertUsable(kind: ServerKind, row: TokenRow): void {
  if (row.status === 'needs_reconnect') {
    throw new AppError(
      'JUNIPER_ERR_OUTLOOK_NEEDS_RECONNECT',
      `${kindLabel(kind)} server "${row.name}" must be reconnected to Outlook${row.error_message ? ` (${row.error_message})` : ''}: click Connect your Outlook account.`,
    );
  }
  if (row.refresh_token_enc === null) {
    throw new AppError('JUNIPER_ERR_OUTLOOK_NOT_CONNECTED', `${kindLabel(kind)} server "${row.name}" has no Outlook token yet: click Connect your Outlook account.`);
  }
}
