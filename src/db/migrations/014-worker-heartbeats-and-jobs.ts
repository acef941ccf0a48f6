// Issue 11 (operations): a heartbeat row per running worker process, so /readyz can tell whether any
// worker is alive (another process's timers are not visible from the web process), and background jobs
// with progress (Fetch Now runs as a job the page and the CLI poll; a second Fetch Now joins the running one).
import { sql, type Kysely } from 'kysely';
import { notNull, withId, type MigrationContext } from './helpers.js';

export function workerHeartbeatsAndJobs(ctx: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema
        .createTable('worker_heartbeats')
        .addColumn('owner', 'text', (c) => c.primaryKey())
        .addColumn('host', 'text', notNull)
        .addColumn('pid', 'integer', notNull)
        .addColumn('started_at', 'bigint', notNull)
        .addColumn('beat_at', 'bigint', notNull)
        .execute();
      await withId(db.schema.createTable('jobs'), ctx.dialect)
        .addColumn('kind', 'text', notNull)
        // What the job works on, e.g. `incoming_server:3`: a running job per target is joined, not doubled.
        .addColumn('target', 'text', notNull)
        .addColumn('state', 'text', (c) => c.notNull().check(sql`state in ('running', 'succeeded', 'failed')`))
        .addColumn('done', 'integer', (c) => notNull(c.defaultTo(0)))
        .addColumn('total', 'integer')
        .addColumn('result', 'text')
        .addColumn('error', 'text')
        .addColumn('owner', 'text', notNull)
        .addColumn('created_by_user_id', 'integer', (c) => c.references('users.id').onDelete('set null'))
        .addColumn('created_at', 'bigint', notNull)
        .addColumn('updated_at', 'bigint', notNull)
        .addColumn('finished_at', 'bigint')
        .execute();
      await db.schema.createIndex('jobs_target_state_idx').on('jobs').columns(['target', 'state']).execute();
    },
  };
}
