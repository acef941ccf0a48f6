// The incoming side as the app, the API and the CLI use it: Test & Confirm and fetchers built with the
// current token provider (read when used, since the OAuth token store is wired after the services).
import type { Kysely } from 'kysely';
import type { DB, IncomingServer } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Ingest } from '../mailbox/ingest.js';
import type { Parse } from '../mailbox/parse-pool.js';
import type { TokenProvider } from '../oauth/token-provider.js';
import type { Parameters } from '../settings/parameters.js';
import type { ConnectDeps } from './connect.js';
import { IncomingFetcher, type FetchCounts, type FetchOptions } from './fetcher.js';
import type { ConnectReader } from './mailbox-reader.js';
import type { FetchState } from './fetch-state.js';
import type { IncomingServers } from './servers.js';
import { testAndConfirm, type TestConfirmResult } from './test-confirm.js';

export interface IncomingMailDeps {
  db: Kysely<DB>;
  servers: IncomingServers;
  fetchState: FetchState;
  ingest: Ingest;
  parameters: Parameters;
  log: Logger;
  tokens: () => TokenProvider | undefined;
  /** The fetch lease (JUNIPER_FETCH_LEASE_SECONDS); a run's own options may still set another. */
  leaseMs?: number;
  /** Messages per FETCH (JUNIPER_FETCH_BATCH_SIZE); a run's own options may still set another. */
  batchSize?: number;
}

export interface FetcherOverrides {
  owner?: string;
  now?: () => number;
  connect?: ConnectReader;
  tokens?: TokenProvider;
  /** How messages are parsed (default: the process's pool). */
  parse?: Parse;
}

/**
 * imap-reader.ts's connector, loaded on the first connection: imapflow and the encodings it brings keep 2-4 MB
 * of heap and add 6-8 MB to a process's resident size, which a `juniper worker` without incoming servers (a
 * sending-only worker) or a CLI command that never connects does not need. Each connection is imapConnector's own.
 */
function imapConnectorOnDemand(timeouts: 'default' | 'test'): ConnectReader {
  return async (endpoint, credentials, options) => {
    const reader = await import('./imap-reader.js');
    return reader.imapConnector(timeouts === 'test' ? reader.TEST_IMAP_TIMEOUTS : reader.DEFAULT_IMAP_TIMEOUTS)(endpoint, credentials, options);
  };
}

export class IncomingMail {
  constructor(private readonly deps: IncomingMailDeps) {}

  private connectDeps(connect: ConnectReader, tokens?: TokenProvider): ConnectDeps {
    return { password: (s) => this.deps.servers.password(s), tokens: tokens ?? this.deps.tokens(), connect };
  }

  fetcher(overrides: FetcherOverrides = {}): IncomingFetcher {
    const { db, fetchState, ingest, parameters, log } = this.deps;
    return new IncomingFetcher({
      ...this.connectDeps(overrides.connect ?? imapConnectorOnDemand('default'), overrides.tokens),
      db,
      servers: fetchState,
      ingest,
      parameters,
      log,
      ...(this.deps.leaseMs !== undefined ? { leaseMs: this.deps.leaseMs } : {}),
      ...(this.deps.batchSize !== undefined ? { batchSize: this.deps.batchSize } : {}),
      ...(overrides.owner ? { owner: overrides.owner } : {}),
      ...(overrides.now ? { now: overrides.now } : {}),
      ...(overrides.parse ? { parse: overrides.parse } : {}),
    });
  }

  /** Fetches one server now (API, CLI): confirmed servers only, like the scheduler. */
  async fetchNow(server: IncomingServer, options: Partial<FetchOptions> & { keepLease?: boolean } = {}, overrides: FetcherOverrides = {}): Promise<FetchCounts> {
    if (server.archived_at !== null) throw new AppError('JUNIPER_ERR_CONFLICT', `Incoming server "${server.name}" (id ${server.id}) is archived.`);
    if (server.state !== 'confirmed') {
      throw new AppError('JUNIPER_ERR_CONFLICT', `Incoming server "${server.name}" (id ${server.id}) is a draft: run Test & Confirm first.`);
    }
    return this.fetcher(overrides).fetchServer(server.id, options);
  }

  async testAndConfirm(server: IncomingServer, overrides: { connect?: ConnectReader; tokens?: TokenProvider } = {}): Promise<TestConfirmResult> {
    return testAndConfirm(server, { ...this.connectDeps(overrides.connect ?? imapConnectorOnDemand('test'), overrides.tokens), servers: this.deps.servers });
  }
}
