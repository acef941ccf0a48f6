// Composition root: opens database and vault, builds the services (services.ts) and, lazily, the HTTP app.
// Starts nothing: no listening, no timers (main.ts does that), so tests can build a whole app and inject().
import type { FastifyInstance } from 'fastify';
import path from 'node:path';
import type { Config } from './config.js';
import { openDatabase, type Database } from './db/database.js';
import { migrateToLatest } from './db/migrate.js';
import { createLogger, type Logger } from './lib/logger.js';
import type { HostResolver } from './mail-servers/host-guard.js';
import { randomBytes } from 'node:crypto';
import { checkVaultKeys, missingKeysText, MISSING_KEY_ADVICE, createVault, keyIdOf, loadVaultKeys, refusalError, SECRET_KEY_ENV, type KeyCheck, KEY_FILE_NAME, type KeySourceDescription, type Vault } from './vault/index.js';
import { storedKeyIds, storedSecretSources } from './stored-secrets.js';
import { openWakeChannel } from './db/wake-channel.js';
import { setSharedParseWorkers } from './mailbox/parse-pool.js';
import { buildServices, type Services } from './services.js';
import { loadProcessMetrics } from './metrics/process-metrics.js';

export type { Services };

export interface App {
  config: Config;
  logger: Logger;
  database: Database;
  vault: Vault;
  /** How the configured keys fit the stored secrets (doctor and `vault status` report it). */
  vaultKeys: VaultKeyState;
  services: Services;
  /** Built lazily: CLI commands that need no HTTP never build it. */
  http(): Promise<FastifyInstance>;
  close(): Promise<void>;
}

export interface VaultKeyState {
  readonly check: KeyCheck;
  readonly source: KeySourceDescription;
  /**
   * True when no key is configured and none was created (read-only commands on a data directory without its
   * key): the vault then holds a throwaway key that is never written anywhere, so nothing must be encrypted.
   */
  readonly ephemeral: boolean;
}

export interface CreateAppOptions {
  logger?: Logger;
  /** Run migrations on open (default true; `juniper migrate` reports them itself). */
  migrate?: boolean;
  /** How mail server host names are resolved for the address policy (tests simulate DNS answers). */
  resolveHost?: HostResolver;
  /**
   * 'open' (default): refuse to start when no stored secret is readable with the configured keys, and create
   * the key file on a fresh install. 'inspect' (doctor, `vault status`, `vault forget`): never refuse and never
   * create a key file, so these commands can report a lost key without changing anything.
   */
  vaultMode?: 'open' | 'inspect';
  /**
   * Count sends, fetches, webhook deliveries and retention in this process's metrics (default true). Off for
   * one-shot CLI commands, which nobody scrapes: loading prom-client cost each of them about 30 ms.
   */
  metrics?: boolean;
}

export async function createApp(config: Config, options: CreateAppOptions = {}): Promise<App> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const database = openDatabase(config.database);
  let vault: Vault;
  let vaultKeys: VaultKeyState;
  try {
    if (options.migrate !== false) await migrateToLatest(database);
    ({ vault, vaultKeys } = await openCheckedVault(config, database, options.vaultMode ?? 'open', options.migrate !== false));
    if (options.metrics !== false) await loadProcessMetrics();
  } catch (e) {
    await database.close();
    throw e;
  }
  if (vaultKeys.check.missing.length && options.vaultMode !== 'inspect') {
    // Some secrets are readable, some not (an old key dropped before rotating, or a secret stored under a stray key).
    logger.warn({ missingKeyIds: vaultKeys.check.missing.map((k) => k.keyId) }, `${missingKeysText(vaultKeys.check.missing)}: run \`juniper doctor\` to see which. ${MISSING_KEY_ADVICE}`);
  }
  // PostgreSQL: wakes the dispatchers of the other processes when mail becomes due (LISTEN/NOTIFY).
  const wake = openWakeChannel(config.database, database.db, logger);
  setSharedParseWorkers(config.fetch.parseWorkers, config.fetch.parseBudgetMs);
  const services = buildServices({ database, vault, logger, wake, resolveHost: options.resolveHost, fetchLeaseMs: config.fetch.leaseMs, fetchBatchSize: config.fetch.batchSize });
  let http: Promise<FastifyInstance> | undefined;
  return {
    config,
    logger,
    database,
    vault,
    vaultKeys,
    services,
    // Imported on first use: CLI commands that never serve HTTP skip loading Fastify.
    http: () => (http ??= import('./http/server.js').then((m) => m.buildHttpServer({ logger, services, trustProxy: config.trustProxy ?? false }))),
    async close() {
      if (http) await (await http).close();
      await services.fetchJobs.stop();
      await wake.close();
      await database.close();
    },
  };
}

// The key is checked against the stored secrets before anything can encrypt: a key generated next to
// secrets made with another key would orphan them silently (see vault/key-check.ts).
async function openCheckedVault(config: Config, database: Database, mode: 'open' | 'inspect', migrated: boolean): Promise<{ vault: Vault; vaultKeys: VaultKeyState }> {
  const found = loadVaultKeys({ dataDir: config.dataDir, secretKeys: config.secretKeys, create: false });
  const fromEnv = found.source === SECRET_KEY_ENV;
  const file = fromEnv ? path.join(path.resolve(config.dataDir), KEY_FILE_NAME) : found.source;
  const configured = found.keys.map((k) => keyIdOf(k));
  const storedByKey = await storedByKeyIfReadable(database, mode === 'inspect' || !migrated);
  const check = checkVaultKeys({ configured, storedByKey: storedByKey ?? {} });
  const source: KeySourceDescription = { fromEnv, file, configured };
  if (mode === 'open' && check.decision === 'refuse') throw refusalError(check, source);
  if (found.keys.length > 0) return { vault: createVault(found.keys, found.source), vaultKeys: { check, source, ephemeral: false } };
  // Create a key only when the census proved the database holds no secret (not when it could not be read).
  if (mode === 'open' && storedByKey) {
    const created = loadVaultKeys({ dataDir: config.dataDir, create: true });
    return { vault: createVault(created.keys, created.source), vaultKeys: { check, source: { ...source, configured: created.keys.map((k) => keyIdOf(k)) }, ephemeral: false } };
  }
  return { vault: createVault([randomBytes(32)], `${file} (missing; not created)`), vaultKeys: { check, source, ephemeral: true } };
}

async function storedByKeyIfReadable(database: Database, mayFail: boolean): Promise<Record<string, number> | undefined> {
  try {
    return await storedKeyIds(storedSecretSources(database.db));
  } catch (e) {
    // Opened without migrating (doctor, readiness checks): an old or empty schema may lack a table, which the
    // caller reports as pending migrations. After migrating, a failing census is a real database failure.
    if (mayFail) return undefined;
    throw e;
  }
}
