// SINK=process: the outbound benchmarks' smtp-server sink in a process of its own, as a real SMTP server is.
// In the benchmark's process the sink's CPU (about as much a mail as nodemailer's) is spent on the same thread
// as the side being measured; on its own, the sink's CPU and the measured side's are printed apart, which
// shows where a difference between raw nodemailer and Juniper lies. A diagnostic, not the default: the
// figures of docs/benchmarks.md are taken with the sink in the benchmark's process.
// Run as a script, this file is the child; startSinkProcess (the parent's side) starts it.
import { fork } from 'node:child_process';
import type { SmtpSink } from '../test/peers/smtp-sink.js';
import { childExecArgv } from '../test/helpers/project-root.js';

type ToParent = { port: number } | { accepted: number } | { cpu: number };
type ToChild = { cpu: true } | { stop: true };

export interface SinkProcess {
  /** The parts of SmtpSink the outbound phases read: its port and how many messages it accepted. */
  sink: SmtpSink;
  /** The sink process's CPU time so far (user + system), µs. */
  cpu: () => Promise<number>;
}

/** How often the child reports its count of accepted messages (when it changed). */
const REPORT_MS = 2;

export async function startSinkProcess(identityUrl: string): Promise<SinkProcess> {
  const child = fork(new URL(import.meta.url).pathname, ['--child'], { execArgv: childExecArgv(import.meta.url), env: { ...process.env, SINK_IDENTITY_URL: identityUrl } });
  let accepted = 0;
  let cpuAnswer: ((micros: number) => void) | undefined;
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the sink process exited (code ${code}) before it listened`)));
    child.on('message', (m: ToParent) => {
      if ('port' in m) resolve(m.port);
      else if ('accepted' in m) accepted = m.accepted;
      else cpuAnswer?.(m.cpu);
    });
  });
  const unavailable = (what: string) => () => {
    throw new Error(`${what} is not available with SINK=process`);
  };
  const sink = {
    host: '127.0.0.1',
    port,
    messages: { get length() { return accepted; } },
    refusals: [],
    authAttempts: [],
    waitFor: unavailable('waitFor'),
    setBehaviour: unavailable('setBehaviour'),
    setAuthDisabled: unavailable('setAuthDisabled'),
    dropConnections: unavailable('dropConnections'),
    stop: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.send({ stop: true } satisfies ToChild);
      await exited;
    },
  } as unknown as SmtpSink;
  return {
    sink,
    cpu: () =>
      new Promise<number>((resolve) => {
        cpuAnswer = resolve;
        child.send({ cpu: true } satisfies ToChild);
      }),
  };
}

if (process.argv.includes('--child')) {
  const { startSmtpSink } = await import('../test/peers/smtp-sink.js');
  const sink = await startSmtpSink({ auth: 'xoauth2', identityUrl: process.env.SINK_IDENTITY_URL!, tls: 'starttls' });
  const send = (m: ToParent) => process.send!(m);
  let reported = -1;
  setInterval(() => {
    if (sink.messages.length !== reported) send({ accepted: (reported = sink.messages.length) });
  }, REPORT_MS);
  process.on('message', (m: ToChild) => {
    if ('cpu' in m) {
      const u = process.cpuUsage();
      send({ cpu: u.user + u.system });
    } else void sink.stop().then(() => process.exit(0));
  });
  send({ port: sink.port });
}
