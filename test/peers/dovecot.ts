// A private Dovecot (Debian package) per test file, started by scripts/peers/dovecot-start.sh on free ports:
// IMAP (+STARTTLS), IMAPS, submission (relaying to relayPort) and LMTP, users with passwords and XOAUTH2
// tokens checked at the identity server (tokens for Exchange Online only: a Microsoft Graph token is refused).
// Start ~0.2 s, stop ~1 s (the master waits for its log process).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { freePort } from './free-port.js';
import { OUTLOOK_AUDIENCE } from './identity-protocol.js';
import { testCertificate } from './tls-certificate.js';
import { projectRoot } from '../helpers/project-root.js';

const run = promisify(execFile);
const scripts = path.join(projectRoot, 'scripts/peers/');

export interface DovecotOptions {
  /** The identity server (test/peers/identity-server.ts) that validates XOAUTH2 tokens. */
  identityUrl: string;
  /** user -> plain password, for PLAIN/LOGIN (no whitespace). Token users need no entry. */
  users: Record<string, string>;
  /** SMTP port on 127.0.0.1 the submission service relays to (no auth, no TLS), e.g. a sink with auth 'none'. */
  relayPort?: number;
  /** tokeninfo (default): GET /userinfo, a 401 refuses; introspect: RFC 7662 POST /introspect. */
  oauthMode?: 'tokeninfo' | 'introspect';
  /** SASL mechanisms for tokens (default ['xoauth2'], as Microsoft 365; imapflow prefers OAUTHBEARER when offered). */
  oauthMechanisms?: ('xoauth2' | 'oauthbearer')[];
  /**
   * The `aud` a token must have, as Exchange Online checks it (default OUTLOOK_AUDIENCE; null: no check). In
   * introspect mode Dovecot 2.3 cannot check it besides `active`: the token must hold Exchange's
   * IMAP.AccessAsUser.All instead (for submission too), which refuses Graph tokens all the same.
   */
  audience?: string | null;
}

export interface Dovecot {
  readonly host: '127.0.0.1';
  readonly imapPort: number;
  readonly imapsPort: number;
  readonly submissionPort: number;
  readonly lmtpPort: number;
  /** Work dir: dovecot.conf, dovecot.log, mail/<domain>/<user>/Maildir. */
  readonly dir: string;
  /** Delivers a raw RFC 5322 message into user's INBOX over LMTP. */
  deliver(user: string, rawMessage: string | Buffer, from?: string): Promise<void>;
  /** The last lines of dovecot.log (auth failures are logged there with their reason). */
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

// Dovecot daemonizes, so it is no child of ours: if a test process dies before its `after` hook, this
// still takes the masters down (the master takes its children with it).
const running = new Set<number>();
let exitHookInstalled = false;
function killOnExit(pid: number): void {
  running.add(pid);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const killAll = (): void => {
    for (const p of running) {
      try {
        process.kill(p, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    running.clear();
  };
  process.once('exit', killAll);
  // 'exit' does not run when a signal ends the process (a test runner's timeout, Ctrl-C): stop the masters,
  // then let the signal do what it would have done.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killAll();
      process.kill(process.pid, signal);
    });
  }
}

async function distinctFreePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

export async function startDovecot(opts: DovecotOptions): Promise<Dovecot> {
  const users = Object.entries(opts.users);
  for (const [user, password] of users) {
    if (/\s/.test(user + password) || !user.includes('@')) throw new Error(`startDovecot: bad user entry ${user}`);
  }
  const base = process.env.JUNIPER_TEST_WORK ?? os.tmpdir();
  const dir = fs.mkdtempSync(path.join(base, 'dovecot-'));
  // mkdtemp makes 0700 dirs; Dovecot's mail processes run as nobody when we are root and must get through.
  fs.chmodSync(dir, 0o755);
  const { key, cert } = testCertificate();
  fs.writeFileSync(path.join(dir, 'cert.pem'), cert);
  fs.writeFileSync(path.join(dir, 'key.pem'), key, { mode: 0o600 });

  let lastError: unknown;
  // Ports are picked before Dovecot binds them; another process may take one in between: retry with new ones.
  for (let attempt = 0; attempt < 3; attempt++) {
    const [imapPort, imapsPort, submissionPort, lmtpPort, spare] = await distinctFreePorts(5);
    if (!imapPort || !imapsPort || !submissionPort || !lmtpPort || !spare) throw new Error('startDovecot: no free ports');
    const env = {
      ...process.env,
      IMAP_PORT: String(imapPort),
      IMAPS_PORT: String(imapsPort),
      SUBMISSION_PORT: String(submissionPort),
      LMTP_PORT: String(lmtpPort),
      RELAY_HOST: '127.0.0.1',
      // Without a relay, submission points at a port nobody listens on: logins work, relaying fails.
      RELAY_PORT: String(opts.relayPort ?? spare),
      IDP_URL: opts.identityUrl,
      OAUTH2_MODE: opts.oauthMode ?? 'tokeninfo',
      OAUTH_MECHS: (opts.oauthMechanisms ?? ['xoauth2']).join(' '),
      OAUTH2_AUDIENCE: opts.audience === null ? '' : (opts.audience ?? OUTLOOK_AUDIENCE),
      USERS: users.map(([u, p]) => `${u}:${p}`).join(' '),
      SSL_CERT: path.join(dir, 'cert.pem'),
      SSL_KEY: path.join(dir, 'key.pem'),
    };
    try {
      await run('bash', [path.join(scripts, 'dovecot-start.sh'), dir], { env });
    } catch (err) {
      lastError = err;
      await run('bash', [path.join(scripts, 'dovecot-stop.sh'), dir]).catch(() => undefined);
      continue;
    }
    const pid = Number(fs.readFileSync(path.join(dir, 'run', 'master.pid'), 'utf8').trim());
    killOnExit(pid);
    return {
      host: '127.0.0.1',
      imapPort,
      imapsPort,
      submissionPort,
      lmtpPort,
      dir,
      async deliver(user, rawMessage, from = 'sender@example.test') {
        // LMTP offers STARTTLS; on loopback there is nothing to protect, so skip it (and the cert check).
        const transport = nodemailer.createTransport({ host: '127.0.0.1', port: lmtpPort, lmtp: true, ignoreTLS: true });
        try {
          const info = await transport.sendMail({ envelope: { from, to: [user] }, raw: rawMessage });
          if (info.rejected.length > 0) throw new Error(`LMTP refused ${user}: ${info.response}`);
        } finally {
          transport.close();
        }
      },
      logTail(lines = 40) {
        try {
          return fs.readFileSync(path.join(dir, 'dovecot.log'), 'utf8').split('\n').slice(-lines - 1).join('\n');
        } catch {
          return '';
        }
      },
      async stop() {
        await run('bash', [path.join(scripts, 'dovecot-stop.sh'), dir]);
        running.delete(pid);
        if (process.env.JUNIPER_TEST_KEEP !== '1') fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  const log = (() => {
    try {
      return fs.readFileSync(path.join(dir, 'dovecot.log'), 'utf8');
    } catch {
      return '(no dovecot.log)';
    }
  })();
  const stderr = (lastError as { stderr?: unknown } | undefined)?.stderr;
  throw new Error(`Dovecot did not start in ${dir}: ${typeof stderr === 'string' ? stderr : String(lastError)}\n${log}`, { cause: lastError });
}
