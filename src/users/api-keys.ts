// API keys for scripts: `jnp_<prefix>_<secret>`. Only a SHA-256 of the whole key is stored (the key has
// 256 random bits, so a plain hash cannot be brute-forced); the prefix identifies a key in lists.
import type { Kysely } from 'kysely';
import type { Actor, AuditLog } from '../audit/audit-log.js';
import type { ApiKey, DB, User } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import { randomToken, sha256Hex } from '../vault/hmac.js';

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

export class ApiKeys {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly audit: AuditLog,
  ) {}

  /** Creates a key and returns it in clear: the only time it is ever shown. */
  async create(user: User, name: string, actor: Actor): Promise<{ key: string; view: ApiKeyView }> {
    const prefix = randomToken(12).replace(/[^A-Za-z0-9]/g, '').slice(0, 8).padEnd(8, '0');
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
    const row = await this.db
      .selectFrom('api_keys')
      .innerJoin('users', 'users.id', 'api_keys.user_id')
      .selectAll('users')
      .select(['api_keys.id as key_id', 'api_keys.revoked_at', 'api_keys.last_used_at'])
      .where('api_keys.key_hash', '=', sha256Hex(key))
      .executeTakeFirst();
    if (!row || row.revoked_at !== null || row.active !== 1) return undefined;
    const now = Date.now();
    if (row.last_used_at === null || now - row.last_used_at > 60_000) {
      await this.db.updateTable('api_keys').set({ last_used_at: now }).where('id', '=', row.key_id).execute();
    }
    const { key_id: _k, revoked_at: _r, last_used_at: _l, ...user } = row;
    return user;
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
