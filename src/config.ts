// Environment → one validated, frozen configuration object. Every JUNIPER_* variable is read here and
// nowhere else, so README's configuration table can be checked against this file.
import net from 'node:net';
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
  JUNIPER_SEND_POLL_SECONDS: z.coerce.number().int().min(1).max(3600).default(1),
  JUNIPER_FETCH_LEASE_SECONDS: z.coerce.number().int().min(1).max(3600).default(300),
  JUNIPER_FETCH_BATCH_SIZE: z.coerce.number().int().min(1).max(1000).default(200),
  JUNIPER_PARSE_WORKERS: z.coerce.number().int().min(0).max(16).optional(),
  JUNIPER_PARSE_BUDGET_SECONDS: z.coerce.number().int().min(0).max(3600).default(20),
  JUNIPER_TRUST_PROXY: z
    .string()
    .transform((v, ctx) => {
      const parsed = parseTrustProxy(v);
      if (typeof parsed === 'string' && parsed.startsWith('!')) {
        ctx.addIssue({ code: 'custom', message: parsed.slice(1) });
        return z.NEVER;
      }
      return parsed as TrustProxy;
    })
    .optional(),
});

/**
 * Which peers may tell Juniper the client's address and scheme (X-Forwarded-For/-Proto): none (false), or the
 * proxies at these addresses or networks (proxy-addr's keywords loopback, linklocal, uniquelocal included).
 */
export type TrustProxy = false | readonly string[];

const PROXY_KEYWORDS = new Set(['loopback', 'linklocal', 'uniquelocal']);

function isAddressOrNetwork(entry: string): boolean {
  const [address = '', prefix, extra] = entry.split('/');
  if (extra !== undefined) return false;
  const family = net.isIP(address);
  if (family === 0) return false;
  if (prefix === undefined) return true;
  if (!/^\d{1,3}$/.test(prefix)) return false;
  return Number(prefix) <= (family === 4 ? 32 : 128);
}

/**
 * JUNIPER_TRUST_PROXY → TrustProxy, or a message starting with '!' when the value is not understood.
 * `true` and hop counts are refused on purpose: they trust whichever peer connects, so any client could forge
 * its address and dodge the sign-in throttle (Fastify itself treats a bare hop count as trusting nobody).
 */
export function parseTrustProxy(raw: string | undefined): TrustProxy | `!${string}` {
  const value = (raw ?? '').trim();
  if (value === '' || value === 'false' || value === 'none') return false;
  if (/^\d+$/.test(value)) {
    return '!a hop count trusts whoever connects, so any client could forge its address: name the proxy instead (its IP address, a network such as 10.0.0.0/8, or loopback)';
  }
  const entries = value.split(',').map((e) => e.trim().toLowerCase()).filter(Boolean);
  const bad = entries.find((e) => !PROXY_KEYWORDS.has(e) && !isAddressOrNetwork(e));
  if (bad !== undefined) {
    return `!${JSON.stringify(bad)} is not an IP address, a network (10.0.0.0/8), loopback, linklocal or uniquelocal; e.g. JUNIPER_TRUST_PROXY=loopback for a proxy on the same machine`;
  }
  return Object.freeze(entries);
}

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
  /**
   * Outgoing dispatcher: how long a claimed mail stays with its worker, how many it claims at once, and how often
   * it looks for due mail when nothing woke it (a mail queued in the same process, or on PostgreSQL anywhere, does).
   */
  readonly send: { readonly leaseMs: number; readonly batchSize: number; readonly pollMs: number };
  /**
   * Incoming fetcher: how long a server stays with the worker fetching it after its last stored message, messages
   * per FETCH, the threads that parse incoming mail (JUNIPER_PARSE_WORKERS; absent: the cores but two, at least
   * one, at most 4) and the longest one message's parse may take there (JUNIPER_PARSE_BUDGET_SECONDS; 0: no limit).
   */
  readonly fetch: { readonly leaseMs: number; readonly batchSize: number; readonly parseWorkers?: number; readonly parseBudgetMs?: number };
  /** Peers whose X-Forwarded-For/-Proto are believed (JUNIPER_TRUST_PROXY); absent = none. */
  readonly trustProxy?: TrustProxy;
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
    send: Object.freeze({ leaseMs: e.JUNIPER_SEND_LEASE_SECONDS * 1000, batchSize: e.JUNIPER_SEND_BATCH_SIZE, pollMs: e.JUNIPER_SEND_POLL_SECONDS * 1000 }),
    fetch: Object.freeze({ leaseMs: e.JUNIPER_FETCH_LEASE_SECONDS * 1000, batchSize: e.JUNIPER_FETCH_BATCH_SIZE, parseBudgetMs: e.JUNIPER_PARSE_BUDGET_SECONDS * 1000, ...(e.JUNIPER_PARSE_WORKERS === undefined ? {} : { parseWorkers: e.JUNIPER_PARSE_WORKERS }) }),
    trustProxy: e.JUNIPER_TRUST_PROXY ?? false,
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
