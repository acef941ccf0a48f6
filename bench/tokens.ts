// Tokens: 8 concurrent senders in two `juniper worker` processes on one database cross an access-token expiry,
// and the identity server must see exactly one refresh per server per expiry.
// - two Outlook servers (2 connections each), so 2 processes × 2 servers × 2 connections = 8 senders;
// - the identity server issues tokens that Juniper reuses for FRESH_S seconds only (lifetime 300 s + FRESH_S,
//   and the token store refreshes 5 minutes before expiry), so each round starts on a token that is due;
// - each round: /token is held unanswered ('hang': a slow identity provider, so the two processes' refreshes
//   overlap for certain), the sink hangs up every session (as a server's idle timeout does: each new session
//   must authenticate again), 8 mails per server are queued; once both workers hold leases and the token
//   request waits, /token answers. Counted: refresh grants per mailbox in the round (expected: one each),
//   token requests held at once (one per server when the refresh is single-flight), sessions authenticated.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { cliActor } from '../src/audit/audit-log.js';
import type { DialectName } from '../src/db/database.js';
import { startOutlookBench, until } from './outlook-setup.js';
import { startWorker, stopWorkers, workerEnv, type WorkerProcess } from './worker-processes.js';

/** Seconds a fresh token is reused before the token store refreshes it (its lifetime minus the 5-minute margin). */
const FRESH_S = 4;
const SERVERS = 2;
const PROCESSES = 2;
const MAILS_PER_SERVER = 8;

export interface TokenRound {
  refreshes: Record<string, number>;
  heldAtOnce: number;
  sessions: number;
}

export interface TokenFigures {
  dialect: DialectName;
  senders: number;
  rounds: TokenRound[];
  seen: number;
  expected: number;
}

export async function tokens(dialect: DialectName, rounds: number): Promise<TokenFigures> {
  const b = await startOutlookBench(dialect, SERVERS);
  const workers: WorkerProcess[] = [];
  try {
    const { idp, sink, t } = b;
    idp.setTokenTtl(300 + FRESH_S);
    // Tokens of the short lifetime from now on; the connect flow's ones live an hour.
    for (const id of b.serverIds) await t.app.services.tokens.accessToken('outgoing', id, { renew: true });
    let refreshedAt = Date.now();
    // Batches of 4: each worker holds 2 mails per server at a time, so each opens both connections of each pool.
    const env = workerEnv(t.config, { JUNIPER_SEND_BATCH_SIZE: '4' });
    workers.push(...(await Promise.all(Array.from({ length: PROCESSES }, () => startWorker(env)))));
    const { db } = t.app.database;
    const result: TokenRound[] = [];
    let sent = 0;
    for (let r = 0; r < rounds; r++) {
      // The token of the previous round is due FRESH_S seconds after its request started.
      await new Promise((res) => setTimeout(res, Math.max(0, refreshedAt + FRESH_S * 1000 + 250 - Date.now())));
      const requestsBefore = idp.tokenRequests.length;
      const authsBefore = sink.authAttempts.length;
      idp.setTokenOutage('hang');
      sink.dropConnections();
      // Servers alternate, so each claim of 4 holds 2 mails of each server: both servers' refreshes overlap.
      const mails = Array.from({ length: MAILS_PER_SERVER * SERVERS }, (_, i) => ({ from: b.mailboxes[i % SERVERS]!, to: [`r${i}@client.test`], subject: `tokens ${r} ${i}`, text: 'hello\n' }));
      const results = await t.app.services.outbox.enqueueMany(mails, null, cliActor);
      assert.ok(results.every((x) => x.status === 202), JSON.stringify(results));
      let heldAtOnce = 0;
      await until(
        async () => {
          heldAtOnce = Math.max(heldAtOnce, idp.heldTokenRequests);
          const owners = await db.selectFrom('outgoing_mails').select(sql<number>`count(distinct lease_owner)`.as('n')).where('state', '=', 'sending').executeTakeFirstOrThrow();
          return Number(owners.n) === PROCESSES && idp.heldTokenRequests > 0;
        },
        'both workers to hold mails while the token request waits',
        30_000,
      );
      // Long enough for the second process's senders to reach the token store and wait on its lease.
      for (let i = 0; i < 10; i++) {
        await new Promise((res) => setTimeout(res, 50));
        heldAtOnce = Math.max(heldAtOnce, idp.heldTokenRequests);
      }
      idp.setTokenOutage(null);
      // The refresh request started before this moment, so its token is due FRESH_S seconds after it at the latest.
      refreshedAt = Date.now();
      sent += mails.length;
      await until(async () => (await t.app.services.queue.countByState()).sent >= sent, `round ${r + 1}: ${mails.length} mails sent`, 60_000);
      const refreshes: Record<string, number> = Object.fromEntries(b.mailboxes.map((m) => [m, 0]));
      for (const req of idp.tokenRequests.slice(requestsBefore)) {
        if (req.grantType === 'refresh_token' && req.status === 200 && req.user) refreshes[req.user] = (refreshes[req.user] ?? 0) + 1;
      }
      const sessions = sink.authAttempts.slice(authsBefore).filter((a) => a.ok).length;
      result.push({ refreshes, heldAtOnce, sessions });
    }
    const states = await t.app.services.queue.countByState();
    if (states.sent !== sent || states.queued + states.sending + states.failed > 0) throw new Error(`tokens: expected ${sent} mails sent, got ${JSON.stringify(states)}`);
    const seen = result.reduce((n, round) => n + Object.values(round.refreshes).reduce((a, c) => a + c, 0), 0);
    return { dialect, senders: PROCESSES * SERVERS * 2, rounds: result, seen, expected: rounds * SERVERS };
  } finally {
    await stopWorkers(workers);
    await b.close();
  }
}

export function printTokens(f: TokenFigures): void {
  f.rounds.forEach((r, i) => {
    const perServer = Object.entries(r.refreshes).map(([m, n]) => `${m} ${n}`).join(', ');
    console.log(`tokens ${f.dialect}, expiry ${i + 1}: refreshes ${perServer}; token requests held at once ${r.heldAtOnce} (expected ${Object.keys(r.refreshes).length}, one per server); sessions authenticated ${r.sessions}`);
  });
  console.log(`ratio tokens ${f.dialect}: refreshes seen/expected ${f.seen}/${f.expected} (${(f.seen / f.expected).toFixed(2)}x, target 1.00x), ${f.senders} senders in ${PROCESSES} processes across ${f.rounds.length} expir${f.rounds.length === 1 ? 'y' : 'ies'}`);
}
