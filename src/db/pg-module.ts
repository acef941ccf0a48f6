// pg, loaded when a PostgreSQL database is opened: a process on SQLite (most CLI runs) never needs it, and it is
// about a tenth of a CLI command's start. pg is CommonJS: require() returns the very module `import pg` would.
import { createRequire } from 'node:module';
import type pg from 'pg';

let loaded: typeof pg | undefined;

export function pgModule(): typeof pg {
  return (loaded ??= createRequire(import.meta.url)('pg') as typeof pg);
}
