// A whole Juniper app for integration tests: temp data dir, a fresh database of the chosen dialect, logs
// captured in memory (so tests can prove no secret reaches them), plus shortcuts to make users and keys.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { cliActor } from '../../src/audit/audit-log.js';
import { createApp, type App, type CreateAppOptions } from '../../src/app.js';
import type { Config } from '../../src/config.js';
import type { DialectName } from '../../src/db/database.js';
import { createLogger } from '../../src/lib/logger.js';
import { migratedDatabaseConfig } from './databases.js';

export interface TestApp {
  app: App;
  config: Config;
  /** Every log line written so far, as one string. */
  logs(): string;
  createUser(login: string, role: 'admin' | 'user', password?: string): Promise<{ id: number; apiKey: string; password: string }>;
  close(): Promise<void>;
}

export async function startTestApp(dialect: DialectName, overrides: Partial<Config> = {}, options: Pick<CreateAppOptions, 'resolveHost'> = {}): Promise<TestApp> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-app-'));
  const config: Config = Object.freeze({
    port: 0,
    host: '127.0.0.1',
    dataDir,
    database: await migratedDatabaseConfig(dialect),
    secretKeys: undefined,
    baseUrl: undefined,
    logLevel: 'debug' as const,
    send: { leaseMs: 120_000, batchSize: 50, pollMs: 1000 },
    fetch: { leaseMs: 300_000, batchSize: 200 },
    ...overrides,
  });
  let captured = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      captured += chunk.toString();
      done();
    },
  });
  const app = await createApp(config, { ...options, logger: createLogger(config.logLevel, sink) });
  return {
    app,
    config,
    logs: () => captured,
    async createUser(login, role, password = `pw-${login}-0123456789`) {
      const view = await app.services.users.create({ login, email: `${login}@example.com`, password, role }, cliActor);
      const user = await app.services.users.requireByLogin(login);
      const { key } = await app.services.apiKeys.create(user, 'test', cliActor);
      return { id: view.id, apiKey: key, password };
    },
    async close() {
      await app.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
