// Liveness and readiness. /healthz answers as long as the process serves HTTP (restart me if not); /readyz
// says whether it can do its work (route traffic to me if so): 200 when ready, 503 with the failing checks.
import type { FastifyPluginAsync } from 'fastify';
import type { Readiness } from '../../jobs/readiness.js';

export function healthRoutes(readiness: Readiness): FastifyPluginAsync {
  return async (app) => {
    app.get('/healthz', { config: { access: 'public' }, logLevel: 'warn' }, async () => ({ status: 'ok' }));
    app.get('/readyz', { config: { access: 'public' }, logLevel: 'warn' }, async (request, reply) => {
      const report = await readiness.check();
      const { database, migrations, workers } = report.checks;
      // Public route: worker host names and pids stay out of the answer, only how many are alive, and so does a
      // driver's error text (a PostgreSQL error can name the host and role): it goes to the log instead.
      if (!report.ready) request.log.warn({ readiness: report.checks }, 'not ready');
      const hidden = (check: { ok: boolean; error?: string }, what: string) => (check.error && !check.ok ? { error: `${what}: see the Juniper log for the reason.` } : {});
      const databaseCheck = { ok: database.ok, ...hidden(database, 'The database does not answer') };
      const migrationsCheck = { ok: migrations.ok, ...(migrations.pending ? { pending: migrations.pending } : {}), ...hidden(migrations, 'The migrations could not be checked') };
      const workerCheck = { ok: workers.ok, alive: workers.alive.length, staleAfterMs: workers.staleAfterMs, ...(workers.error ? { error: workers.error.startsWith('No worker process') || workers.error.startsWith('not checked') ? workers.error : 'The worker heartbeats could not be read: see the Juniper log for the reason.' } : {}) };
      return reply.status(report.ready ? 200 : 503).send({ status: report.ready ? 'ready' : 'not_ready', database: databaseCheck, migrations: migrationsCheck, workers: workerCheck });
    });
  };
}
