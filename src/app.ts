// Composition root: opens database and vault, builds the services (services.ts) and, lazily, the HTTP app.
// Starts nothing: no listening, no timers (main.ts does that), so tests can build a whole app and inject().
import type { FastifyInstance } from 'fastify';
import type { Config } from './config.js';
import { openDatabase, type Database } from './db/database.js';
import { migrateToLatest } from './db/migrate.js';
import { createLogger, type Logger } from './lib/logger.js';
import type { HostResolver } from './mail-servers/host-guard.js';
import { openVault, type Vault } from './vault/index.js';
import { openWakeChannel } from './db/wake-channel.js';
import { setSharedParseWorkers } from './mailbox/parse-pool.js';
import { buildServices, type Services } from './services.js';

export type { Services };

export interface App {
  config: Config;
  logger: Logger;
  database: Database;
  vault: Vault;
  services: Services;
  /** Built lazily: CLI commands that need no HTTP never build it. */
  http(): Promise<FastifyInstance>;
  close(): Promise<void>;
}

export interface CreateAppOptions {
  logger?: Logger;
  /** Run migrations on open (default true; `juniper migrate` reports them itself). */
  migrate?: boolean;
  /** How mail server host names are resolved for the address policy (tests simulate DNS answers). */
  resolveHost?: HostResolver;
}

export async function createApp(config: Config, options: CreateAppOptions = {}): Promise<App> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const vault = openVault({ dataDir: config.dataDir, secretKeys: config.secretKeys });
  const database = openDatabase(config.database);
  try {
    if (options.migrate !== false) await migrateToLatest(database);
  } catch (e) {
    await database.close();
    throw e;
  }
  // PostgreSQL: wakes the dispatchers of the other processes when mail becomes due (LISTEN/NOTIFY).
  const wake = openWakeChannel(config.database, database.db, logger);
  setSharedParseWorkers(config.fetch.parseWorkers);
  const services = buildServices({ database, vault, logger, wake, resolveHost: options.resolveHost, fetchLeaseMs: config.fetch.leaseMs, fetchBatchSize: config.fetch.batchSize });
  let http: Promise<FastifyInstance> | undefined;
  return {
    config,
    logger,
    database,
    vault,
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
