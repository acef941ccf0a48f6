// A fetching process that dies when one message arrives, as one killed by the OOM killer or by a supervisor
// that timed out does: SIGKILL, no handler runs, nothing is recorded. Run by incoming-poison-fetch.test.ts
// as `node --import tsx test/helpers/fetch-dies-at.ts SERVER_ID UID` with a `juniper` CLI environment.
import { pino } from 'pino';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/lib/logger.js';
import { readerWith } from './incoming.js';

const [id, dieAt] = process.argv.slice(2).map(Number) as [number, number];
const app = await createApp(loadConfig(process.env), { logger: createLogger('warn', pino.destination(2)) });
const dies = readerWith((real) => ({
  fetch: async function* (uids) {
    for await (const m of real.fetch(uids)) {
      if (m.uid === dieAt) process.kill(process.pid, 'SIGKILL');
      yield m;
    }
  },
}));
// A short lease, so the next run need not wait long for the dead one's to run out.
const counts = await app.services.incoming.fetchNow(await app.services.incomingServers.get(id), { batchSize: 50, leaseMs: 1000 }, { connect: dies });
process.stdout.write(`${JSON.stringify(counts)}\n`);
await app.close();
