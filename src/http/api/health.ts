// Liveness and readiness. /healthz answers as long as the process serves HTTP (restart me if not); /readyz
// says whether it can do its work (route traffic to me if so): 200 when ready, 503 with the failing checks.
import type { FastifyPluginAsync } from 'fastify';
import type { Readiness } from '../../jobs/readiness.js';

export function healthRoutes(readiness: Readiness): FastifyPluginAsync {
  return async (app) => {
    app.get('/healthz', { config: { access: 'public' }, logLevel: 'warn' }, async () => ({ status: 'ok' }));
    app.get('/readyz', { config: { access: 'public' }, logLevel: 'warn' }, async (_request, reply) => {
      const report = await readiness.check();
      const { database, migrations, workers } = report.checks;
      // Public route: worker host names and pids stay out of the answer, only how many are alive.
      const workerCheck = { ok: workers.ok, alive: workers.alive.length, staleAfterMs: workers.staleAfterMs, ...(workers.error ? { error: workers.error } : {}) };
      return reply.status(report.ready ? 200 : 503).send({ status: report.ready ? 'ready' : 'not_ready', database, migrations, workers: workerCheck });
    });
  };
}
