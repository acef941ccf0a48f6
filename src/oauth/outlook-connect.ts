// "Connect your Outlook account": start builds Microsoft's authorize URL and remembers the request;
// confirm checks Microsoft's answer against it (state random, single-use, 10 minutes, same user and
// session, same server), exchanges the code with the same redirect_uri and PKCE verifier, and stores the
// tokens encrypted as the server's connection (connections.ts).
import type { Kysely } from 'kysely';
import type { Actor, AuditLog } from '../audit/audit-log.js';
import type { DB } from '../db/schema.js';
import type { Principal } from '../users/principal.js';
import { AppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Settings } from '../settings/settings.js';
import { sha256Hex } from '../vault/hmac.js';
import type { Vault } from '../vault/index.js';
import type { OAuthAppStatus } from './app-status.js';
import { consentScope, scopeFor } from './microsoft.js';
import { buildAuthorizeUrl, exchangeCode, newPkce, newState } from './oauth-client.js';
import { explainAadsts, oauthErrorDetails, parseAadsts } from './oauth-errors.js';
import { errorCodeOf } from './token-store.js';
import type { ServerKind } from './token-provider.js';
import { accessTokenContext, forgetConnection, kindLabel, loadTokenRow, putAccessToken, refreshTokenContext, tableOf } from './connections.js';
import { bindingChanges, bindingDiff, encodeBinding, readBinding, type ServerBinding } from './server-binding.js';

export const STATE_TTL_MS = 10 * 60 * 1000;
export const VERIFIER_CONTEXT = 'oauth_states.code_verifier';

export interface ConfirmQuery {
  code?: string;
  state?: string;
  error?: string;
  error_description?: string;
}

export interface ConfirmResult {
  kind: ServerKind;
  serverId: number;
  account: string | null;
  /** Set when Microsoft signed in another mailbox than the server's username (fine for shared mailboxes). */
  accountMismatch: string | null;
}

/** Where a server's form lives in the UI, for redirects and "go back" links. */
export const serverPath = (kind: ServerKind, id: number) => `/${kind}-servers/${id}`;

export class OutlookConnect {
  constructor(
    private readonly deps: {
      db: Kysely<DB>;
      vault: Vault;
      settings: Settings;
      appStatus: OAuthAppStatus;
      audit: AuditLog;
      log: Logger;
      /** Called after a successful connect: mails waiting for this server go out now. */
      onConnected: (kind: ServerKind, serverId: number) => Promise<void>;
      now?: () => number;
    },
  ) {}

  private now(): number {
    return this.deps.now?.() ?? Date.now();
  }

  /**
   * `expected`: the server as the person starting saw it (the form Connect saved just now). A change by someone
   * else in between is refused here, as one during the sign-in is refused at confirm.
   */
  async start(kind: ServerKind, serverId: number, principal: Principal, expected?: ServerBinding): Promise<{ authorizeUrl: string }> {
    const { db, vault, settings } = this.deps;
    const server = await loadTokenRow(db, kind, serverId);
    assertMayConnect(principal, kind, server, 'missing');
    if (server.auth !== 'outlook') {
      throw new AppError('JUNIPER_ERR_VALIDATION', `${kindLabel(kind)} server "${server.name}" does not use Outlook: tick Outlook on the server and save it first.`);
    }
    if (!server.username) throw new AppError('JUNIPER_ERR_VALIDATION', `Set the Microsoft 365 mailbox as the username of "${server.name}" first.`);
    const credentials = await settings.outlookCredentials();
    if (!credentials) throw new AppError('JUNIPER_ERR_OUTLOOK_CREDENTIALS');
    // Uninstalled in Apps: no new consent (existing servers were switched off Outlook before uninstalling).
    if (!credentials.enabled) throw new AppError('JUNIPER_ERR_SETUP_INCOMPLETE', 'Microsoft Outlook is not installed: an admin installs it in Apps (search Outlook without the Apps filter), then Connect your Outlook account works.');
    if (!credentials.redirectUri) {
      throw new AppError('JUNIPER_ERR_SETUP_INCOMPLETE', 'Juniper does not know its public address, so Microsoft cannot send you back: set the system parameter web.base.url (or JUNIPER_BASE_URL) to the address you use, e.g. https://mail.example.com.');
    }
    const redirectUri = credentials.redirectUri;
    const binding = await readBinding(db, kind, serverId);
    if (!binding) throw new AppError('JUNIPER_ERR_NOT_FOUND', `No ${kind} mail server with id ${serverId}.`);
    const changedSince = expected ? bindingDiff(expected, binding) : [];
    if (changedSince.length > 0) {
      throw new AppError('JUNIPER_ERR_CONFLICT', `${kindLabel(kind)} server "${server.name}" was changed by someone else just now (its ${changedSince.join(', ')}): not sent to Microsoft. Check the server's settings, then click Connect your Outlook account again.`);
    }
    const state = newState();
    const pkce = await newPkce();
    const now = this.now();
    await db.transaction().execute(async (trx) => {
      await trx
        .insertInto('oauth_states')
        .values({
          id: sha256Hex(state),
          user_id: principal.user.id,
          session_id: principal.session?.id ?? null,
          server_kind: kind,
          server_id: serverId,
          code_verifier_enc: vault.encrypt(pkce.verifier, VERIFIER_CONTEXT),
          redirect_uri: redirectUri,
          created_at: now,
          expires_at: now + STATE_TTL_MS,
          used_at: null,
          server_binding: encodeBinding(binding),
        })
        .execute();
      await this.deps.audit.record(actorOf(principal), 'outlook.connect.start', `${tableOf(kind)}:${serverId}`, undefined, trx);
    });
    // Old requests are of no use to anyone: drop them while we are here.
    await db.deleteFrom('oauth_states').where('expires_at', '<', now - STATE_TTL_MS).execute();
    const authorizeUrl = buildAuthorizeUrl(credentials, {
      redirectUri: credentials.redirectUri,
      scope: consentScope(kind, await this.mayUseGraph(kind, serverId), credentials.graphResource),
      state,
      codeChallenge: pkce.challenge,
      loginHint: server.username,
    });
    return { authorizeUrl };
  }

  /** Refuses the answer when the server's mailbox, auth or endpoint changed since Connect started (server-binding.ts). */
  private async assertUnchanged(db: Kysely<DB>, request: StateRow, name: string, principal: Principal): Promise<void> {
    const binding = await readBinding(db, request.server_kind, request.server_id);
    const changes = binding ? bindingChanges(request.server_binding, binding) : ['server (it is gone)'];
    if (changes.length > 0) throw await this.changedMeanwhile(request, name, changes, principal);
  }

  private async changedMeanwhile(request: StateRow, name: string, changes: string[], principal: Principal): Promise<AppError> {
    const kind = request.server_kind;
    await this.deps.audit.record(actorOf(principal), 'outlook.connect.refused', `${tableOf(kind)}:${request.server_id}`, { changed: changes });
    this.deps.log.warn({ server: request.server_id, kind, op: 'oauth.connect', changed: changes }, 'Outlook sign-in refused: the server changed while it ran');
    return new AppError(
      'JUNIPER_ERR_OAUTH_STATE',
      `${kindLabel(kind)} server "${name}" changed while you were signing in at Microsoft (its ${changes.join(', ')}), so Juniper did not keep this sign-in: Outlook tokens are only used for the mailbox and the server they were given for. Check the server's settings, then click Connect your Outlook account again.`,
      { details: { kind, serverId: request.server_id } },
    );
  }

  /** An outgoing server that may send through Graph (transport graph or auto) asks consent for Graph's permissions too. */
  private async mayUseGraph(kind: ServerKind, serverId: number): Promise<boolean> {
    if (kind !== 'outgoing') return false;
    const server = await this.deps.db.selectFrom('outgoing_servers').select('transport').where('id', '=', serverId).executeTakeFirst();
    return server !== undefined && server.transport !== 'smtp';
  }

  /** Checks and completes Microsoft's answer. Throws JUNIPER_ERR_OAUTH_STATE (403) for any state problem. */
  async confirm(query: ConfirmQuery, principal: Principal): Promise<ConfirmResult> {
    const { db, vault, settings, appStatus } = this.deps;
    if (!query.state) throw new AppError('JUNIPER_ERR_OAUTH_STATE', 'The answer from Microsoft carries no state; start again with Connect your Outlook account on the server.');
    const id = sha256Hex(query.state);
    const request = await db.selectFrom('oauth_states').selectAll().where('id', '=', id).executeTakeFirst();
    if (!request) throw new AppError('JUNIPER_ERR_OAUTH_STATE');
    const back = { details: { kind: request.server_kind, serverId: request.server_id } };
    if (request.user_id !== principal.user.id) {
      throw new AppError('JUNIPER_ERR_OAUTH_STATE', 'This Microsoft sign-in was started by another Juniper user; sign in as that user, or click Connect your Outlook account yourself.', back);
    }
    if (request.session_id !== null && request.session_id !== principal.session?.id) {
      throw new AppError('JUNIPER_ERR_OAUTH_STATE', 'This Microsoft sign-in was started in another browser session; click Connect your Outlook account again here.', back);
    }
    if (request.used_at !== null) throw new AppError('JUNIPER_ERR_OAUTH_STATE', 'This Microsoft sign-in answer was already used; click Connect your Outlook account again.', back);
    if (request.expires_at <= this.now()) {
      throw new AppError('JUNIPER_ERR_OAUTH_STATE', 'This Microsoft sign-in took more than 10 minutes and expired; click Connect your Outlook account again.', back);
    }
    const claimed = await db.updateTable('oauth_states').set({ used_at: this.now() }).where('id', '=', id).where('used_at', 'is', null).executeTakeFirst();
    if (Number(claimed.numUpdatedRows) !== 1) throw new AppError('JUNIPER_ERR_OAUTH_STATE', 'This Microsoft sign-in answer was already used; click Connect your Outlook account again.', back);

    const kind = request.server_kind;
    const server = await loadTokenRow(db, kind, request.server_id);
    // Ownership may have changed in the minutes since the sign-in started.
    assertMayConnect(principal, kind, server, 'forbidden');
    if (query.error) {
      const parsed = parseAadsts(query.error, query.error_description);
      const explanation = explainAadsts(parsed.aadsts, parsed.oauthError, { description: parsed.description, redirectUri: request.redirect_uri });
      await this.deps.audit.record(actorOf(principal), 'outlook.connect.denied', `${tableOf(kind)}:${server.id}`, { error: query.error, aadsts: parsed.aadsts });
      throw new AppError('JUNIPER_ERR_OAUTH_DENIED', `Microsoft did not connect "${server.name}": ${explanation}`, back);
    }
    if (!query.code) throw new AppError('JUNIPER_ERR_OAUTH_DENIED', 'Microsoft answered without an authorization code; click Connect your Outlook account again.', back);
    // Before asking Microsoft for tokens at all, and again below under the row's lock.
    await this.assertUnchanged(db, request, server.name, principal);
    const credentials = await settings.outlookCredentials();
    if (!credentials) throw new AppError('JUNIPER_ERR_OUTLOOK_CREDENTIALS', undefined, back);
    let tokens;
    try {
      tokens = await exchangeCode(credentials, {
        code: query.code,
        redirectUri: request.redirect_uri,
        codeVerifier: vault.decrypt(request.code_verifier_enc, VERIFIER_CONTEXT),
        scope: scopeFor(kind),
      });
    } catch (e) {
      const details = oauthErrorDetails(e);
      if (details?.errorClass === 'app' && e instanceof AppError) await appStatus.set(errorCodeOf(details), e.message);
      throw e instanceof AppError ? new AppError(e.code, e.message, { cause: e, details: { ...e.details, ...back.details } }) : e;
    }
    const now = this.now();
    const changed = await db.transaction().execute(async (trx) => {
      const binding = await readBinding(trx, kind, server.id, true);
      const changes = binding ? bindingChanges(request.server_binding, binding) : ['server (it is gone)'];
      if (changes.length > 0) return changes;
      // A new consent is a new connection: a refresh of the old one still running finds it gone and stores nothing.
      await forgetConnection(trx, kind, server.id);
      const connection = await trx
        .insertInto('oauth_connections')
        .values({
          server_kind: kind,
          server_id: server.id,
          account: tokens.account,
          refresh_token_enc: tokens.refreshToken ? vault.encrypt(tokens.refreshToken, refreshTokenContext(kind, server.id)) : null,
          status: tokens.refreshToken ? 'valid' : 'needs_reconnect',
          error_code: tokens.refreshToken ? null : 'no_refresh_token',
          error_message: tokens.refreshToken ? null : 'Microsoft returned no refresh token: the offline_access permission is missing. Add it to the app registration and connect again.',
          refreshed_at: now,
          created_at: now,
        })
        .returning('id')
        .executeTakeFirstOrThrow();
      await putAccessToken(trx, connection.id, 'outlook', vault.encrypt(tokens.accessToken, accessTokenContext(kind, server.id)), tokens.expiresAt);
      await this.deps.audit.record(actorOf(principal), 'outlook.connect', `${tableOf(kind)}:${server.id}`, { account: tokens.account }, trx);
      return [];
    });
    if (changed.length > 0) throw await this.changedMeanwhile(request, server.name, changed, principal);
    await appStatus.clear();
    this.deps.log.info({ server: server.id, kind, op: 'oauth.connect', account: tokens.account }, 'Outlook account connected');
    await this.deps.onConnected(kind, server.id);
    const mismatch =
      tokens.account && server.username && tokens.account.toLowerCase() !== server.username.toLowerCase()
        ? `Connected as ${tokens.account}; this server's username is ${server.username}. That is fine for shared mailboxes or send-as rights.`
        : null;
    return { kind, serverId: server.id, account: tokens.account, accountMismatch: mismatch };
  }
}

type StateRow = { server_kind: ServerKind; server_id: number; server_binding: string | null };

function actorOf(p: Principal): Actor {
  return { userId: p.user.id, label: p.user.login };
}

/** Admins, or a user connecting their own personal server. */
function assertMayConnect(p: Principal, kind: ServerKind, server: { id: number; owner_user_id: number | null }, unseen: 'missing' | 'forbidden'): void {
  if (p.user.role === 'admin' || server.owner_user_id === p.user.id) return;
  // Another user's personal server is one this user cannot see: answered as a missing one, as everywhere else;
  // a sign-in answer for a server given to someone else meanwhile is refused as such (the user knew it).
  if (unseen === 'missing' && server.owner_user_id !== null) throw new AppError('JUNIPER_ERR_NOT_FOUND', `No ${kind} mail server with id ${server.id}.`);
  throw new AppError('JUNIPER_ERR_FORBIDDEN', 'Only an admin, or the owner of a personal server, may connect its Outlook account.');
}
