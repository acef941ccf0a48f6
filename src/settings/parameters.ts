// System parameters in the database: known keys validated by parameter-rules.ts, free keys stored as
// given. Values are not secrets, so the audit log records them in full.
import type { Kysely } from 'kysely';
import { AuditLog, type Actor } from '../audit/audit-log.js';
import type { DB } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import {
  isKnownParameter,
  knownParameters,
  normaliseParameter,
  ruleOf,
  toMailParameters,
  type KnownParameterKey,
  type MailParameters,
} from './parameter-rules.js';

export interface ParameterView {
  key: string;
  value: string;
  /** True when nothing is stored and the value shown is the built-in default. */
  isDefault?: boolean;
  /** Present for known parameters. */
  description?: string;
}

const knownKeys = Object.keys(knownParameters) as KnownParameterKey[];

function view(key: string, value: string, isDefault = false): ParameterView {
  const rule = ruleOf(key);
  return { key, value, ...(isDefault ? { isDefault: true } : {}), ...(rule ? { description: rule.description } : {}) };
}

/**
 * How long snapshot() answers from memory: every enqueue and every dispatcher round read it (a SELECT per API
 * request, docs/benchmarks.md). A write through this process's service takes effect at once; one by another
 * process (`juniper params set` next to `juniper serve`) within this time.
 */
export const SNAPSHOT_TTL_MS = 1000;

/** The snapshot kept between calls, shared by the service and its transaction copies (which invalidate it). */
interface SnapshotCache {
  value?: MailParameters;
  until: number;
  /** Moves on every write, so a read that raced with one is not kept. */
  generation: number;
}

export class Parameters {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly audit: AuditLog,
    private readonly cache: SnapshotCache = { until: 0, generation: 0 },
  ) {}

  /** The same service on a transaction, for callers that change parameters together with other rows. */
  withTransaction(trx: Kysely<DB>): Parameters {
    return new Parameters(trx, new AuditLog(trx), this.cache);
  }

  /** The next snapshot() reads the database again (called on every write, before and after it). */
  private invalidate(): void {
    this.cache.value = undefined;
    this.cache.until = 0;
    this.cache.generation++;
  }

  /** Runs `fn` in a transaction, or in the caller's when this service already is on one (Kysely does not nest them). */
  private atomically<T>(fn: (db: Kysely<DB>) => Promise<T>): Promise<T> {
    return this.db.isTransaction ? fn(this.db) : this.db.transaction().execute(fn);
  }

  /** Every stored parameter, plus the known ones that are unset but have a default; sorted by key. */
  async list(): Promise<ParameterView[]> {
    const rows = await this.db.selectFrom('parameters').select(['key', 'value']).execute();
    const views = rows.map((r) => view(r.key, r.value));
    const stored = new Set(rows.map((r) => r.key));
    for (const key of knownKeys) {
      const fallback = this.defaultOf(key);
      if (!stored.has(key) && fallback !== undefined) views.push(view(key, fallback, true));
    }
    return views.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async get(key: string): Promise<ParameterView> {
    const stored = await this.stored(key);
    if (stored !== undefined) return view(key, stored);
    const fallback = this.defaultOf(key);
    if (fallback !== undefined) return view(key, fallback, true);
    throw new AppError(
      'JUNIPER_ERR_UNKNOWN_PARAMETER',
      isKnownParameter(key)
        ? `The system parameter ${key} is not set and has no default; set it with \`juniper params set ${key} VALUE\`.`
        : `No system parameter ${JSON.stringify(key)} is set.`,
      { details: { key } },
    );
  }

  /** The stored value, else the known key's default, else undefined. */
  async value(key: string): Promise<string | undefined> {
    return (await this.stored(key)) ?? this.defaultOf(key);
  }

  async set(key: string, value: string, actor: Actor): Promise<ParameterView> {
    const normalised = normaliseParameter(key, value);
    this.invalidate();
    await this.atomically(async (db) => {
      await db
        .insertInto('parameters')
        .values({ key, value: normalised, updated_at: Date.now() })
        .onConflict((oc) => oc.column('key').doUpdateSet({ value: normalised, updated_at: Date.now() }))
        .execute();
      await this.audit.record(actor, 'parameter.set', `parameter:${key}`, { key, value: normalised }, db);
    });
    this.invalidate();
    return view(key, normalised);
  }

  /** Removes a stored value; true when there was one. Known keys fall back to their default. */
  async unset(key: string, actor: Actor): Promise<boolean> {
    this.invalidate();
    try {
      return await this.atomically(async (db) => {
        const result = await db.deleteFrom('parameters').where('key', '=', key).executeTakeFirst();
        const removed = Number(result.numDeletedRows) > 0;
        if (removed) await this.audit.record(actor, 'parameter.unset', `parameter:${key}`, { key }, db);
        return removed;
      });
    } finally {
      this.invalidate();
    }
  }

  /** Stores a value only when the key has none (start-up seeding, e.g. web.base.url from JUNIPER_BASE_URL); true when stored. */
  async seedIfUnset(key: string, value: string): Promise<boolean> {
    const normalised = normaliseParameter(key, value);
    this.invalidate();
    try {
      return await this.atomically(async (db) => {
        const result = await db
          .insertInto('parameters')
          .values({ key, value: normalised, updated_at: Date.now() })
          .onConflict((oc) => oc.column('key').doNothing())
          .executeTakeFirst();
        const seeded = Number(result.numInsertedOrUpdatedRows ?? 0) > 0;
        if (seeded) await this.audit.record({ userId: null, label: 'startup' }, 'parameter.seed', `parameter:${key}`, { key, value: normalised }, db);
        return seeded;
      });
    } finally {
      this.invalidate();
    }
  }

  /** The known parameters, typed, read in one query: what routing and OAuth act on. */
  async snapshot(): Promise<MailParameters> {
    // Inside a transaction the caller may have changed parameters not yet committed: read them, keep nothing.
    if (this.db.isTransaction) return this.read();
    const now = Date.now();
    if (this.cache.value && this.cache.until > now) return this.cache.value;
    const { generation } = this.cache;
    const value = await this.read();
    // Kept only if no write began meanwhile: it may have committed after this read.
    if (this.cache.generation === generation) {
      this.cache.value = value;
      this.cache.until = now + SNAPSHOT_TTL_MS;
    }
    return value;
  }

  private async read(): Promise<MailParameters> {
    const rows = await this.db.selectFrom('parameters').select(['key', 'value']).where('key', 'in', knownKeys).execute();
    return toMailParameters(new Map(rows.map((r) => [r.key, r.value])));
  }

  private async stored(key: string): Promise<string | undefined> {
    const row = await this.db.selectFrom('parameters').select('value').where('key', '=', key).executeTakeFirst();
    return row?.value;
  }

  private defaultOf(key: string): string | undefined {
    return ruleOf(key)?.defaultValue;
  }
}
