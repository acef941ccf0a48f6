// 2,000 mails sent by real `juniper worker` and `juniper serve` processes to a real SMTP server while the
// test SIGKILLs them at seeded moments (at least 10 times, a new process started each time; on PostgreSQL
// two processes share the queue). Every mail must arrive and end `sent`; a mail may arrive twice only if a
// process holding its lease was killed after the server had accepted it (at-least-once delivery: SMTP has
// no way to ask whether a message already came). The figures per kill are printed.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { cliActor } from '../../src/audit/audit-log.js';
import { createApp, type App } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/lib/logger.js';
import { cliPrincipal } from '../../src/cli/principal.js';
import { cliEnv } from '../helpers/cli.js';
import { dialects, freshDatabaseConfig } from '../helpers/databases.js';
import { seededRandom, sleep, startJuniper, testSeed, until, type JuniperProcess } from '../helpers/processes.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

// 2,000 mails leave room for the 12 kills (at most 12 × 130 deliveries apart) with mail still queued after the
// last; 5,000 took over a minute per database to enqueue and send without adding kills.
const MAILS = 2000;
const KILLS = 12;
const BATCH = 20;

interface KillFigure {
  kind: string;
  pid: number;
  /** Mails the killed process held a lease on. */
  inFlight: number;
  /** Of those, how many the SMTP server had already accepted: each is sent again, so arrives twice. */
  alreadyDelivered: number;
  /** Message-IDs of the mails it held. */
  ids: string[];
}

async function enqueue(app: App, n: number): Promise<Set<string>> {
  const ids = new Set<string>();
  // A few side by side: on PostgreSQL each enqueue is its own transaction and round trips dominate.
  const parallel = app.database.dialect === 'postgres' ? 8 : 1;
  for (let i = 0; i < n; i += parallel) {
    const done = await Promise.all(
      Array.from({ length: Math.min(parallel, n - i) }, (_, k) =>
        app.services.outbox.enqueue({ from: 'notifications@example.com', to: [`r${i + k}@client.test`], subject: `mail ${i + k}`, text: `hello ${i + k}` }, null, cliActor),
      ),
    );
    for (const r of done) ids.add(r.messageId);
  }
  return ids;
}

function messageIdOf(raw: Buffer): string {
  const end = raw.indexOf('\r\n\r\n');
  const id = /^Message-ID:\s*(<[^>\r\n]+>)/im.exec(raw.subarray(0, end < 0 ? raw.length : end).toString('latin1'))?.[1];
  if (!id) throw new Error(`a message without Message-ID reached the server:\n${raw.subarray(0, 500).toString()}`);
  return id;
}

describe('crash safety of sending: SIGKILLed juniper processes during a 2,000-mail run', () => {
  const living = new Set<JuniperProcess>();
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    await Promise.all([...living].map((p) => p.kill('SIGKILL')));
    for (const c of cleanups.reverse()) await c();
  });

  for (const dialect of dialects) {
    it(`every mail is sent, none lost, a duplicate only from a kill after the server accepted it (${dialect})`, async () => {
      const started = Date.now();
      const rng = seededRandom(testSeed());
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-crash-out-'));
      const db = await freshDatabaseConfig(dialect);
      const env = {
        ...cliEnv(dataDir, db.kind === 'postgres' ? db.url : `sqlite:${db.file}`),
        JUNIPER_LOG_LEVEL: 'warn',
        JUNIPER_PORT: '0',
        // Short leases so a dead process's mails come back within seconds (renewed every second while alive).
        JUNIPER_SEND_LEASE_SECONDS: '4',
        JUNIPER_SEND_BATCH_SIZE: String(BATCH),
      };
      const app = await createApp(loadConfig(env), { logger: createLogger('silent') });
      const sink: SmtpSink = await startSmtpSink({ auth: 'password', passwords: { 'notifications@example.com': 'pw' } });
      cleanups.push(async () => {
        await sink.stop();
        await app.close();
        fs.rmSync(dataDir, { recursive: true, force: true });
      });
      await app.services.outgoingServers.create(
        { name: 'sink', host: '127.0.0.1', port: sink.port, security: 'starttls', auth: 'password', username: 'notifications@example.com', password: 'pw', fromFilter: null, priority: 10, active: true, allowSelfSigned: true },
        cliPrincipal,
        cliActor,
      );
      const sent = await enqueue(app, MAILS);
      const enqueuedAt = Date.now();

      // Message-IDs as they arrive, read once each from the header block (a full MIME parse of every mail costs seconds).
      const arrivals: string[] = [];
      const parseArrivals = async () => {
        for (let i = arrivals.length; i < sink.messages.length; i++) arrivals.push(messageIdOf(sink.messages[i]!.raw));
      };

      let spawned = 0;
      const start = (): JuniperProcess & { kind: string } => {
        // Every third process is a whole `juniper serve` (web, API and workers), the others `juniper worker`.
        const kind = spawned++ % 3 === 1 ? 'serve' : 'worker';
        const p = startJuniper(env, [kind]);
        living.add(p);
        void p.exit.then(() => living.delete(p));
        return Object.assign(p, { kind });
      };
      const alive = Array.from({ length: dialect === 'postgres' ? 2 : 1 }, start);
      const figures: KillFigure[] = [];

      for (let k = 0; k < KILLS; k++) {
        // Kill after a seeded number of further deliveries, then a few seeded milliseconds into whatever it is doing.
        const target = sink.messages.length + rng.int(50, 130);
        await until(() => sink.messages.length >= target, 60_000, () => `${target} deliveries (have ${sink.messages.length}); ${alive.map((p) => p.output()).join('\n')}`);
        await sleep(rng.int(0, 40));
        // A process that holds mails right now (not one still starting up), where there is a choice.
        const holders = new Set(
          (await app.database.db.selectFrom('outgoing_mails').select('lease_owner').distinct().where('state', '=', 'sending').execute()).map((r) => r.lease_owner?.split(':')[1]),
        );
        const busy = alive.map((p, i) => (holders.has(String(p.pid)) ? i : -1)).filter((i) => i >= 0);
        const index = busy.length > 0 ? busy[rng.int(0, busy.length - 1)]! : rng.int(0, alive.length - 1);
        const victim = alive[index]!;
        const exit = await victim.kill('SIGKILL');
        assert.equal(exit.signal, 'SIGKILL', `process ${victim.pid} was still running when killed:\n${victim.output()}`);
        alive[index] = start();
        // Bytes the dead process had already written may still be in the sink's socket buffer.
        await sleep(150);
        await parseArrivals();
        const held = await app.database.db
          .selectFrom('outgoing_mails')
          .select('message_id')
          .where('state', '=', 'sending')
          .where('lease_owner', 'like', `%:${victim.pid}:%`)
          .execute();
        const atSink = new Set(arrivals);
        const ids = held.map((r) => r.message_id);
        figures.push({ kind: victim.kind, pid: victim.pid, inFlight: ids.length, alreadyDelivered: ids.filter((id) => atSink.has(id)).length, ids });
      }

      await until(
        async () => (await app.services.queue.countByState()).sent === MAILS,
        90_000,
        () => `every mail sent (sink has ${sink.messages.length}); ${alive.map((p) => p.output()).join('\n')}`,
      );
      for (const p of alive) {
        const exit = await p.kill('SIGTERM');
        assert.equal(exit.code, 0, `process ${p.pid} stops cleanly on SIGTERM:\n${p.output()}`);
      }
      await parseArrivals();

      const counts = await app.services.queue.countByState();
      assert.deepEqual(counts, { queued: 0, sending: 0, sent: MAILS, failed: 0, cancelled: 0 }, 'every mail ends sent');
      const copies = new Map<string, number>();
      for (const id of arrivals) copies.set(id, (copies.get(id) ?? 0) + 1);
      for (const id of sent) assert.ok(copies.has(id), `mail ${id} never reached the SMTP server`);
      assert.equal(copies.size, MAILS, 'nothing arrived that was not enqueued');

      // A mail arrives more than once only if it was held by a killed process, at most once more per such kill.
      const heldAtKills = new Map<string, number>();
      for (const f of figures) for (const id of f.ids) heldAtKills.set(id, (heldAtKills.get(id) ?? 0) + 1);
      for (const [id, n] of copies) {
        assert.ok(n - 1 <= (heldAtKills.get(id) ?? 0), `mail ${id} arrived ${n} times but was in flight at ${heldAtKills.get(id) ?? 0} kill(s)`);
      }
      const duplicates = arrivals.length - MAILS;
      // The bound the design guarantees: a process holds at most one batch of leases, so a kill repeats at most one batch.
      assert.ok(duplicates <= KILLS * BATCH, `${duplicates} duplicates after ${KILLS} kills of batch ${BATCH}`);
      assert.ok(figures.length >= 10 && figures.some((f) => f.kind === 'serve'), 'at least 10 kills, some of juniper serve');

      const perKill = figures.map((f) => f.alreadyDelivered);
      console.log(
        `[crash-safety ${dialect}] seed ${rng.seed}: ${MAILS} mails, ${KILLS} SIGKILLs (${figures.filter((f) => f.kind === 'serve').length} of serve), batch ${BATCH}; ` +
          `in flight per kill ${figures.map((f) => f.inFlight).join(',')}; accepted-but-unrecorded per kill ${perKill.join(',')} (max ${Math.max(...perKill)}); ` +
          `duplicates at the server ${duplicates}; send phase ${((Date.now() - enqueuedAt) / 1000).toFixed(1)} s, whole test ${((Date.now() - started) / 1000).toFixed(1)} s`,
      );
    });
  }
});
