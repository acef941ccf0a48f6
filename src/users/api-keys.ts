// API keys for scripts: `jnp_<prefix>_<secret>`. Only a SHA-256 of the whole key is stored (the key has
// 256 random bits, so a plain hash cannot be brute-forced); the prefix identifies a key in lists.
import type { Kysely } from 'kysely';
import type { Actor, AuditLog } from '../audit/audit-log.js';
import type { ApiKey, DB, User } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import { randomToken, sha256Hex } from '../vault/hmac.js';
import { CONTROL_CHARACTERS_REFUSED, hasControlCharacters } from '../lib/plain-text.js';

export interface ApiKeyView {
  id: number;
  userId: number;
  name: string;
  prefix: string;
  createdAt: string;
  lastUsedAt: string | null;
  revoked: boolean;
}

const KEY_PATTERN = /^jnp_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{43}$/;

/**
 * How long a verified key is trusted without asking the database again. A script sending one mail per request
 * paid a SELECT per request for it (docs/benchmarks.md). A revoke in this process takes effect at once; one made
 * by another process (the CLI next to `juniper serve`), or a user disabled there, within this time.
 */
export const VERIFIED_KEY_TTL_MS = 1000;
/** Verified keys remembered at most (the oldest is forgotten first). */
const VERIFIED_KEYS_MAX = 1000;

/** A fresh display prefix: 8 letters and digits, not secret (lists and the audit log show it). */
export function newKeyPrefix(): string {
  return randomToken(12).replace(/[^A-Za-z0-9]/g, '').slice(0, 8).padEnd(8, '0');
}

/** What a key's display prefix looks like (newKeyPrefix makes them; a form nonce carries one). */
export const KEY_PREFIX_PATTERN = /^[A-Za-z0-9]{8}$/;

/** What createOnce did: made the key (shown now, the only time), or found the one an earlier submission made. */
export type CreateOnceResult = { created: true; key: string; view: ApiKeyView } | { created: false; view: ApiKeyView };

export class ApiKeys {
  /** Verified keys by SHA-256 of the key (never the key itself), with the key's id and when to ask again. */
  private readonly verified = new Map<string, { user: User; keyId: number; until: number }>();

  constructor(
    private readonly db: Kysely<DB>,
    private readonly audit: AuditLog,
  ) {}

  /** createOnce calls in flight, by user and prefix: a double click's second post waits for the first. */
  private readonly creating = new Map<string, Promise<CreateOnceResult>>();

  /** Creates a key and returns it in clear: the only time it is ever shown. */
  async create(user: User, name: string, actor: Actor): Promise<{ key: string; view: ApiKeyView }> {
    return this.insert(user, name, actor, newKeyPrefix());
  }

  /**
   * Creates the user's key with this prefix unless they already have one: the prefix was chosen when a form
   * was shown, so a resubmission of that form (reload, back and forward, double click) finds the key the first
   * submission made instead of making a second live key nobody saw. Waiting on the in-flight call covers two
   * posts in this process; two processes posting the same form at the same instant are not covered.
   */
  async createOnce(user: User, name: string, actor: Actor, prefix: string): Promise<CreateOnceResult> {
    if (!KEY_PREFIX_PATTERN.test(prefix)) throw new AppError('JUNIPER_ERR_VALIDATION', `An API key prefix is 8 letters or digits; got ${JSON.stringify(prefix)}.`);
    const slot = `${user.id}:${prefix}`;
    const pending = this.creating.get(slot);
    if (pending) {
      const first = await pending.catch(() => undefined);
      if (first) return { created: false, view: first.view };
    }
    const run = (async (): Promise<CreateOnceResult> => {
      const existing = await this.db.selectFrom('api_keys').selectAll().where('user_id', '=', user.id).where('prefix', '=', prefix).executeTakeFirst();
      if (existing) return { created: false, view: this.view(existing) };
      return { created: true, ...(await this.insert(user, name, actor, prefix)) };
    })();
    this.creating.set(slot, run);
    try {
      return await run;
    } finally {
      if (this.creating.get(slot) === run) this.creating.delete(slot);
    }
  }

  private async insert(user: User, name: string, actor: Actor, prefix: string): Promise<{ key: string; view: ApiKeyView }> {
    // Every path (API, account page, CLI) ends here; the name is listed by `juniper api-keys list` (plain-text.ts).
    if (hasControlCharacters(name)) throw new AppError('JUNIPER_ERR_VALIDATION', `Invalid api key: name: ${CONTROL_CHARACTERS_REFUSED}.`, { details: { field: 'name' } });
    const key = `jnp_${prefix}_${randomToken(32)}`;
    const row = await this.db.transaction().execute(async (trx) => {
      const inserted = await trx
        .insertInto('api_keys')
        .values({ user_id: user.id, name: name || 'api key', prefix, key_hash: sha256Hex(key), created_at: Date.now(), last_used_at: null, revoked_at: null })
        .returningAll()
        .executeTakeFirstOrThrow();
      await this.audit.record(actor, 'api_key.create', `user:${user.login}`, { prefix, name: inserted.name }, trx);
      return inserted;
    });
    return { key, view: this.view(row) };
  }

  /** The key's user, or undefined for an unknown, revoked or malformed key or a disabled user. */
  async resolve(key: string): Promise<User | undefined> {
    if (!KEY_PATTERN.test(key)) return undefined;
    const hash = sha256Hex(key);
    const now = Date.now();
    const known = this.verified.get(hash);
    if (known && known.until > now) return known.user;
    this.verified.delete(hash);
    const row = await this.db
      .selectFrom('api_keys')
      .innerJoin('users', 'users.id', 'api_keys.user_id')
      .selectAll('users')
      .select(['api_keys.id as key_id', 'api_keys.revoked_at', 'api_keys.last_used_at'])
      .where('api_keys.key_hash', '=', hash)
      .executeTakeFirst();
    if (!row || row.revoked_at !== null || row.active !== 1) return undefined;
    if (row.last_used_at === null || now - row.last_used_at > 60_000) {
      await this.db.updateTable('api_keys').set({ last_used_at: now }).where('id', '=', row.key_id).execute();
    }
    const { key_id: keyId, revoked_at: _r, last_used_at: _l, ...user } = row;
    if (this.verified.size >= VERIFIED_KEYS_MAX) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(hash, { user, keyId, until: now + VERIFIED_KEY_TTL_MS });
    return user;
  }

  /** Forgets every verified key, so the next request of each asks the database (a user changed or disabled). */
  forgetVerified(): void {
    this.verified.clear();
  }

  async list(userId?: number): Promise<ApiKeyView[]> {
    let q = this.db.selectFrom('api_keys').selectAll().orderBy('id');
    if (userId !== undefined) q = q.where('user_id', '=', userId);
    return (await q.execute()).map((r) => this.view(r));
  }

  async revoke(id: number, actor: Actor): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const r = await trx.updateTable('api_keys').set({ revoked_at: Date.now() }).where('id', '=', id).where('revoked_at', 'is', null).executeTakeFirst();
      if (Number(r.numUpdatedRows) === 0) throw new AppError('JUNIPER_ERR_NOT_FOUND', `No active API key with id ${id}.`);
      await this.audit.record(actor, 'api_key.revoke', `api_key:${id}`, undefined, trx);
    });
    for (const [hash, v] of this.verified) if (v.keyId === id) this.verified.delete(hash);
  }

  private view(r: ApiKey): ApiKeyView {
    return {
      id: r.id,
      userId: r.user_id,
      name: r.name,
      prefix: `jnp_${r.prefix}`,
      createdAt: new Date(r.created_at).toISOString(),
      lastUsedAt: r.last_used_at === null ? null : new Date(r.last_used_at).toISOString(),
      revoked: r.revoked_at !== null,
    };
  }
}
