// Composition root: wires database, vault, services and the HTTP app. Starts nothing: no listening, no
// timers (main.ts does that), so tests can build a whole app and drive it with inject().
import type { FastifyInstance } from 'fastify';
import type { Config } from './config.js';
import { openDatabase, type Database } from './db/database.js';
import { migrateToLatest } from './db/migrate.js';
import { AuditLog } from './audit/audit-log.js';
import { createLogger, type Logger } from './lib/logger.js';
import { ApiKeys } from './users/api-keys.js';
import { FirstRunSetup } from './users/first-run.js';
import { Sessions } from './users/sessions.js';
import { SignIn } from './users/sign-in.js';
import { Users } from './users/users.js';
import { openVault, type Vault } from './vault/index.js';
import { Parameters } from './settings/parameters.js';
import { Settings } from './settings/settings.js';
import { BlobStore } from './mailbox/blob-store.js';
import { Outbox } from './outgoing/outbox.js';
import { OutgoingQueue } from './outgoing/queue.js';
import { OutgoingServers } from './outgoing/servers.js';
import { HostGuard, type HostResolver } from './mail-servers/host-guard.js';
import { IncomingMail } from './incoming/incoming-mail.js';
import { FetchState } from './incoming/fetch-state.js';
import { IncomingServers } from './incoming/servers.js';
import { Ingest } from './mailbox/ingest.js';
import { MessageStore } from './mailbox/messages.js';
import { OAuthAppStatus } from './oauth/app-status.js';
import { OutlookConnect } from './oauth/outlook-connect.js';
import { TokenStore } from './oauth/token-store.js';
import type { Services } from './services.js';

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
  const db = database.db;
  const audit = new AuditLog(db);
  const users = new Users(db, audit);
  const parameters = new Parameters(db, audit);
  const blobs = new BlobStore(db);
  const queue = new OutgoingQueue(db, database.dialect, blobs);
  const hostGuard = new HostGuard(db, options.resolveHost);
  const incomingServers = new IncomingServers(db, vault, audit, hostGuard);
  const fetchState = new FetchState(db, hostGuard);
  const outgoingServers = new OutgoingServers(db, vault, audit, hostGuard);
  const outbox = new Outbox(queue, parameters, outgoingServers);
  const settings = new Settings(db, vault, parameters, audit);
  const oauthAppStatus = new OAuthAppStatus(db);
  const tokenStore = new TokenStore({ db, vault, settings, appStatus: oauthAppStatus, log: logger.child({ component: 'oauth' }) });
  const outlookConnect = new OutlookConnect({
    db,
    vault,
    settings,
    appStatus: oauthAppStatus,
    audit,
    log: logger.child({ component: 'oauth' }),
    onConnected: async (kind, serverId) => {
      if (kind !== 'outgoing') return;
      if ((await queue.wakeWaiting(serverId)) > 0) outbox.wake();
    },
  });
  const services: Services = {
    audit,
    users,
    sessions: new Sessions(db),
    apiKeys: new ApiKeys(db, audit),
    signIn: new SignIn(users),
    firstRun: new FirstRunSetup(users),
    parameters,
    settings,
    outgoingServers,
    blobs,
    queue,
    outbox,
    tokens: tokenStore,
    oauthAppStatus,
    outlookConnect,
    incomingServers,
    fetchState,
    incoming: new IncomingMail({
      db,
      servers: incomingServers,
      fetchState,
      ingest: new Ingest(blobs),
      parameters,
      log: logger.child({ component: 'incoming' }),
      tokens: () => services.tokens,
      leaseMs: config.fetch.leaseMs,
    }),
    messages: new MessageStore(db, blobs),
  };
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
      await database.close();
    },
  };
}
