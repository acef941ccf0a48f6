// Table types of migration 014, merged into the DB interface of src/db/schema.ts (declaration merging), so
// the tables of issue 11 stay next to the code that uses them and schema.ts stays untouched by this slice.
import type { Generated } from 'kysely';

export interface WorkerHeartbeatsTable {
  /** The worker process's id (its dispatcher owner: host:pid:random). */
  owner: string;
  host: string;
  pid: number;
  started_at: number;
  beat_at: number;
}

export type JobState = 'running' | 'succeeded' | 'failed';

export interface JobsTable {
  id: Generated<number>;
  kind: string;
  target: string;
  state: JobState;
  done: Generated<number>;
  total: number | null;
  /** JSON of the finished job's result. */
  result: string | null;
  error: string | null;
  /** The process running the job: a job whose process stopped beating is reported failed, not running forever. */
  owner: string;
  created_by_user_id: number | null;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
}

declare module '../db/schema.js' {
  interface DB {
    worker_heartbeats: WorkerHeartbeatsTable;
    jobs: JobsTable;
  }
}
