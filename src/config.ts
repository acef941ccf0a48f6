// Environment → one validated, frozen configuration object. Every JUNIPER_* variable is read here and
// nowhere else, so README's configuration table can be checked against this file.
import path from 'node:path';
import { z } from 'zod';
import { AppError } from './lib/errors.js';

const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const envSchema = z.object({
  JUNIPER_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  JUNIPER_HOST: z.string().min(1).default('127.0.0.1'),
  JUNIPER_DATA_DIR: z.string().min(1).default('./data'),
  DATABASE_URL: z.string().optional(),
  JUNIPER_SECRET_KEY: z.string().optional(),
  JUNIPER_BASE_URL: z
    .url({ protocol: /^https?$/ })
    .refine((u) => !/[?#]/.test(u), 'must be a plain base URL such as https://mail.example.com (no ? or #)')
    .optional(),
  JUNIPER_LOG_LEVEL: z.enum(logLevels).default('info'),
  JUNIPER_SEND_LEASE_SECONDS: z.coerce.number().int().min(1).max(3600).default(120),
  JUNIPER_SEND_BATCH_SIZE: z.coerce.number().int().min(1).max(1000).default(50),
  JUNIPER_FETCH_LEASE_SECONDS: z.coerce.number().int().min(1).max(3600).default(300),
});

export type Database = { kind: 'sqlite'; file: string } | { kind: 'postgres'; url: string };

export interface Config {
  readonly port: number;
  readonly host: string;
  readonly dataDir: string;
  readonly database: Database;
  /** Secret keys from JUNIPER_SECRET_KEY (comma-separated, newest first); undefined = use the key file. */
  readonly secretKeys: readonly string[] | undefined;
  readonly baseUrl: string | undefined;
  readonly logLevel: (typeof logLevels)[number];
  /** Outgoing dispatcher: how long a claimed mail stays with its worker, and how many it claims at once. */
  readonly send: { readonly leaseMs: number; readonly batchSize: number };
  /** Incoming fetcher: how long a server stays with the worker fetching it after its last stored message. */
  readonly fetch: { readonly leaseMs: number };
}

export const configVariables = Object.keys(envSchema.shape);

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== '')));
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new AppError('JUNIPER_ERR_CONFIG', `Invalid environment: ${lines.join('; ')}`);
  }
  const e = parsed.data;
  const dataDir = path.resolve(e.JUNIPER_DATA_DIR);
  return Object.freeze({
    port: e.JUNIPER_PORT,
    host: e.JUNIPER_HOST,
    dataDir,
    database: parseDatabaseUrl(e.DATABASE_URL, dataDir),
    secretKeys: e.JUNIPER_SECRET_KEY
      ?.split(',')
      .map((k) => k.trim())
      .filter(Boolean),
    baseUrl: e.JUNIPER_BASE_URL?.replace(/\/+$/, ''),
    logLevel: e.JUNIPER_LOG_LEVEL,
    send: Object.freeze({ leaseMs: e.JUNIPER_SEND_LEASE_SECONDS * 1000, batchSize: e.JUNIPER_SEND_BATCH_SIZE }),
    fetch: Object.freeze({ leaseMs: e.JUNIPER_FETCH_LEASE_SECONDS * 1000 }),
  });
}

function parseDatabaseUrl(url: string | undefined, dataDir: string): Database {
  if (!url) return { kind: 'sqlite', file: path.join(dataDir, 'juniper.sqlite') };
  if (/^postgres(ql)?:\/\//.test(url)) return { kind: 'postgres', url };
  if (url.startsWith('sqlite:')) {
    const file = url.slice('sqlite:'.length).replace(/^\/\//, '');
    return { kind: 'sqlite', file: file === ':memory:' ? file : path.resolve(file) };
  }
  throw new AppError(
    'JUNIPER_ERR_CONFIG',
    'DATABASE_URL must start with postgres:// (PostgreSQL) or sqlite: (a file path); leave it unset for ./data/juniper.sqlite.',
  );
}
