// The end-to-end phases' API client: POSTs mails to Juniper's REST API with a number of requests in flight,
// as a script or an application would. By default it runs in a process of its own (a real client is never
// inside Juniper's process); CLIENT=inprocess runs it on the benchmark's own thread, where its CPU counts
// against Juniper (the figures of docs/benchmarks.md before the twelfth session were taken that way).
// Run as a script, this file is the child; startHttpClient (the parent's side) starts it.
import { fork } from 'node:child_process';
import http from 'node:http';
import { childExecArgv } from '../test/helpers/project-root.js';

/** One end-to-end run of the client: mails [0, n) in requests of `perRequest`, `inFlight` at a time. */
export interface ClientRun {
  address: string;
  apiKey: string;
  /** From addresses, taken in turn (mail i is sent from mailboxes[i % length]). */
  mailboxes: string[];
  n: number;
  inFlight: number;
  perRequest: number;
  /** POST /api/v1/mails/batch instead of /api/v1/mails. */
  batch: boolean;
}

export interface ClientResult {
  /** Seconds from the first request to the last answer. */
  seconds: number;
  /** Per request, ms, sorted. */
  latencies: number[];
}

export interface HttpClient {
  run(r: ClientRun): Promise<ClientResult>;
  close(): Promise<void>;
}

export const benchMail = (mailboxes: string[], i: number) => ({
  from: mailboxes[i % mailboxes.length]!,
  to: [`r${i}@client.test`],
  subject: `bench ${i}`,
  text: `hello ${i}\n`,
});

// node:http with kept-alive connections, as a script would use. (fetch, i.e. undici with web streams, was
// about a sixth of the end-to-end profile on its own when the client ran in the benchmark's process.)
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** POSTs JSON and resolves to the status and the body's text. */
function postJson(url: string, key: string, body: unknown): Promise<{ status: number; text: string }> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': payload.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

async function post(r: ClientRun, from: number, to: number): Promise<void> {
  if (!r.batch) {
    const res = await postJson(`${r.address}/api/v1/mails`, r.apiKey, benchMail(r.mailboxes, from));
    if (res.status !== 202) throw new Error(`POST /api/v1/mails answered ${res.status}: ${res.text}`);
    return;
  }
  const mails = Array.from({ length: to - from }, (_, k) => benchMail(r.mailboxes, from + k));
  const res = await postJson(`${r.address}/api/v1/mails/batch`, r.apiKey, { mails });
  const body = JSON.parse(res.text) as { queued: number };
  if (res.status !== 200 || body.queued !== mails.length) throw new Error(`POST /api/v1/mails/batch answered ${res.status}: ${res.text.slice(0, 500)}`);
}

const secondsSince = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e9;

/** The client's work, wherever it runs. */
export async function runClient(r: ClientRun): Promise<ClientResult> {
  const latencies: number[] = [];
  const start = process.hrtime.bigint();
  let next = 0;
  const client = async () => {
    while (next < r.n) {
      const from = next;
      const to = Math.min(r.n, from + r.perRequest);
      next = to;
      const t0 = process.hrtime.bigint();
      await post(r, from, to);
      latencies.push(secondsSince(t0) * 1000);
    }
  };
  await Promise.all(Array.from({ length: r.inFlight }, client));
  const seconds = secondsSince(start);
  latencies.sort((x, y) => x - y);
  return { seconds, latencies };
}

type ToChild = { run: ClientRun } | { stop: true };
type ToParent = { result: ClientResult } | { error: string };

/** The client in a process of its own unless CLIENT=inprocess. */
export async function startHttpClient(): Promise<HttpClient> {
  if (process.env.CLIENT === 'inprocess') return { run: runClient, close: async () => {} };
  const child = fork(new URL(import.meta.url).pathname, ['--child'], { execArgv: childExecArgv(import.meta.url) });
  let pending: { resolve: (r: ClientResult) => void; reject: (e: Error) => void } | undefined;
  child.on('message', (m: ToParent) => {
    const p = pending;
    pending = undefined;
    if ('result' in m) p?.resolve(m.result);
    else p?.reject(new Error(`the API client process failed: ${m.error}`));
  });
  child.on('exit', (code) => pending?.reject(new Error(`the API client process exited (code ${code}) during a run`)));
  return {
    run: (r) =>
      new Promise<ClientResult>((resolve, reject) => {
        pending = { resolve, reject };
        child.send({ run: r } satisfies ToChild);
      }),
    close: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.send({ stop: true } satisfies ToChild);
      await exited;
    },
  };
}

if (process.argv.includes('--child')) {
  process.on('message', (m: ToChild) => {
    if ('stop' in m) {
      agent.destroy();
      process.exit(0);
    }
    runClient(m.run).then(
      (result) => process.send!({ result } satisfies ToParent),
      (err: unknown) => process.send!({ error: err instanceof Error ? err.message : String(err) } satisfies ToParent),
    );
  });
}
