// A worker process has no HTTP server of its own, yet counts sends and fetches: with JUNIPER_METRICS_PORT
// set, it (and `juniper serve`, if set there too) answers GET /metrics on that port, bound to 127.0.0.1 unless
// JUNIPER_METRICS_HOST says otherwise. No authentication on this port: loopback is the protection; a
// Prometheus elsewhere scrapes through a tunnel or a proxy that adds its own (docs/operations.md).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { AppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { MetricsScraper } from './scrape.js';

export interface MetricsListen {
  port: number;
  host: string;
}

const envSchema = z.object({
  JUNIPER_METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  JUNIPER_METRICS_HOST: z.string().min(1).optional(),
});

/** Where to serve metrics, or undefined when JUNIPER_METRICS_PORT is unset. */
export function metricsListenFrom(env: NodeJS.ProcessEnv): MetricsListen | undefined {
  const parsed = envSchema.safeParse({ JUNIPER_METRICS_PORT: env.JUNIPER_METRICS_PORT || undefined, JUNIPER_METRICS_HOST: env.JUNIPER_METRICS_HOST || undefined });
  if (!parsed.success) throw new AppError('JUNIPER_ERR_CONFIG', `JUNIPER_METRICS_PORT must be a port number (0-65535), not "${env.JUNIPER_METRICS_PORT}".`);
  const { JUNIPER_METRICS_PORT: port, JUNIPER_METRICS_HOST: host } = parsed.data;
  return port === undefined ? undefined : { port, host: host ?? '127.0.0.1' };
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

export async function startMetricsServer(scraper: MetricsScraper, listen: MetricsListen, log: Logger): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Only GET /metrics is served on this port.\n');
      return;
    }
    scraper.render().then(
      ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(body),
      (err: unknown) => {
        log.error({ err, op: 'metrics.scrape' }, 'metrics scrape failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics scrape failed: see the logs\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ op: 'metrics.listen', host: listen.host, port }, `metrics on http://${listen.host}:${port}/metrics`);
  return { port, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** main.ts: the metrics port of this process, when configured. */
export async function startMetricsServerFromEnv(app: { services: { metrics: MetricsScraper }; logger: Logger }, env = process.env): Promise<MetricsServer | undefined> {
  const listen = metricsListenFrom(env);
  return listen ? startMetricsServer(app.services.metrics, listen, app.logger) : undefined;
}
