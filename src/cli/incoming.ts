// `juniper incoming …` (incoming mail servers) and `juniper fetch [ID]` (fetch now, with a progress bar on a
// terminal and one plain line per server otherwise, so logs and cron mails stay readable). Each fetch runs as
// a Fetch Now job (src/jobs/fetch-jobs.ts), so the API and the UI see it running and its counts afterwards.
import { Command } from 'commander';
import type { FetchProgress } from '../incoming/fetcher.js';
import type * as FetchJobs from '../jobs/fetch-jobs.js';
import type { IncomingServerView } from '../incoming/servers.js';
import { isAppError, type AppError } from '../lib/errors.js';
import type { WithApp } from './with-app.js';
import { idArgument } from './args.js';
import { onFirstStopSignal, signalExitCode, type StopSignal } from './stop-signals.js';
import { addServerCommands, serverFields, tokenText, type CliField } from './server-commands.js';

const fields: CliField[] = [
  ...serverFields({
    host: 'IMAP host (Outlook: outlook.office365.com by default)',
    port: 'port (993 SSL/TLS, 143 STARTTLS)',
    security: ['ssl', 'starttls', 'none'],
    auth: ['password', 'outlook'],
  }),
  { flags: '--folder <folder>', help: 'folder to fetch (default INBOX)' },
  { flags: '--keep-original', help: 'keep the original .eml of every message', no: 'do not keep the original .eml' },
  { flags: '--keep-attachments', help: 'keep attachments (default)', no: 'record attachments by name and size only' },
  { flags: '--priority <n>', help: 'lower is fetched first', as: Number },
  { flags: '--interval <minutes>', help: 'fetch every N minutes (default 5)', body: 'intervalMinutes', as: Number },
  { flags: '--allow-self-signed', help: 'accept a self-signed certificate (private servers only)', no: 'check the certificate again (the default)' },
  { flags: '--active', help: 'fetch the server', no: 'keep the server but do not fetch it' },
];

function describe(s: IncomingServerView): string {
  const token = s.auth === 'outlook' ? tokenText(s.token) : '';
  const state = s.archived ? 'archived' : !s.active ? 'inactive' : s.state;
  const error = s.lastError ? `  failing since ${s.errorSince}: ${s.lastError}` : '';
  return `${s.id}\t${s.name}\t${s.host}:${s.port} ${s.security}\tauth ${s.auth}${s.username ? ` as ${s.username}` : ''}\tfolder ${s.folder}\tevery ${s.intervalMinutes} min\t${state}${token}${error}\n`;
}

// The kind (zod schemas), the fetcher and the fetch jobs are imported when a command runs, so that `--help`
// and the other commands do not load them.
const incoming = () => import('../incoming/servers.js');

export function incomingCommand(withApp: WithApp): Command {
  return addServerCommands(new Command('incoming').description('incoming (IMAP) mail servers'), withApp, {
    kind: async () => (await incoming()).incomingKind,
    servers: (app) => app.services.incomingServers,
    protocol: 'IMAP',
    fields,
    describe,
    help: {
      list: 'list incoming mail servers',
      empty: 'No incoming mail servers yet: juniper incoming create --help\n',
      create: 'create an incoming mail server (a draft until `juniper incoming test ID`)',
      update: 'change an incoming mail server',
      archive: 'archive a server: it stops fetching at once and its messages stay; `restore ID` brings it back',
      test: 'Test & Confirm: connect, sign in, open the folder; on success the server is confirmed and fetched on its interval',
    },
    test: async (app, server) => {
      const result = await app.services.incoming.testAndConfirm(server);
      return { ok: result.ok, line: `${result.ok ? 'OK' : `FAILED (${result.stage})`}: ${result.message}\n` };
    },
  });
}


/**
 * A one-line bar redrawn in place: `[#######-------]  70/200  Orders`, padded with spaces over a longer line
 * drawn before it (no erase-line sequence: the CLI's output carries no control character, terminal-text.ts).
 */
function progressBar(p: FetchProgress, previousLength = 0, width = 30): string {
  const ratio = p.total === 0 ? 1 : p.fetched / p.total;
  const filled = Math.round(ratio * width);
  const line = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(p.fetched).padStart(String(p.total).length)}/${p.total}  ${p.serverName}`;
  return `\r${line.padEnd(previousLength)}`;
}

/** Draws the bars of one fetch, each over the one before. */
function progressPrinter(): (p: FetchProgress) => void {
  let previous = 0;
  return (p) => {
    const bar = progressBar(p, previous);
    previous = bar.length - 1;
    process.stderr.write(bar);
  };
}

export function fetchCommand(withApp: WithApp): Command {
  return new Command('fetch')
    .description('fetch incoming mail now: one server, or every confirmed active server (each fetch is a job, as Fetch Now)')
    .argument('[id]', 'server id (default: all confirmed, active servers)')
    .action(async (sid: string | undefined) => {
      const [{ incomingKind }, { countsSummary }, jobs] = await Promise.all([incoming(), import('../incoming/fetcher.js'), import('../jobs/fetch-jobs.js')]);
      const id = (value: string) => idArgument(value, incomingKind.listCommand);
      const tty = process.stderr.isTTY === true;
      await withApp(async (app) => {
        const { incomingServers, fetchJobs } = app.services;
        const servers = sid
          ? [await incomingServers.get(id(sid))]
          : (await incomingServers.list()).filter((s) => s.state === 'confirmed' && s.active === 1);
        if (servers.length === 0) process.stdout.write('No confirmed, active incoming servers: juniper incoming test ID confirms one.\n');
        // Ctrl-C or a service manager's SIGTERM: the fetch stops after the message in hand and its job is
        // recorded as stopped, and the servers not reached yet are listed as not started. A second signal of
        // either kind is not caught (both listeners go at the first): it ends the process at once, and the
        // server's fetch lease then frees the server.
        let stoppedBy: StopSignal | undefined;
        const removeSignals = onFirstStopSignal((sig) => {
          stoppedBy = sig;
          process.stderr.write(`${tty ? '\n' : ''}juniper fetch: ${sig} received, stopping after the message in hand (a second Ctrl-C or SIGTERM stops at once)\n`);
          void fetchJobs.stop(`juniper fetch received ${sig}`);
        });
        let reached = 0;
        try {
          for (const server of servers) {
            if (stoppedBy) break;
            reached++;
            const onProgress = tty ? progressPrinter() : undefined;
            try {
              // As Fetch Now in the UI and API: a job row in the jobs history; a server another process's job
              // holds (its fetch lease) is reported, not fetched beside it.
              const { job } = await fetchJobs.start(server, null, onProgress ? { onProgress } : {});
              const outcome = (await fetchJobs.settled(job.id))!;
              if (!outcome.ok) throw outcome.error;
              if (tty) process.stderr.write('\n');
              process.stdout.write(`${server.id}\t${server.name}\t${countsSummary(outcome.counts)}\n`);
            } catch (err) {
              if (tty) process.stderr.write('\n');
              if (!isAppError(err)) throw err;
              process.stdout.write(`${server.id}\t${server.name}\t${failureLine(server.id, err, jobs)}\n`);
              process.exitCode = jobs.isStopped(err) && stoppedBy ? signalExitCode(stoppedBy) : 1;
            }
          }
          // Stopped between servers, before the first, or while one finished by itself: the rest are said, and
          // the exit code is the signal's whatever the fetches before it did (a cron mail must not read "all done").
          if (stoppedBy) {
            for (const server of servers.slice(reached)) process.stdout.write(`${server.id}\t${server.name}\tSTOPPED: not started (juniper fetch received ${stoppedBy}); run juniper fetch ${server.id} to fetch it.\n`);
            process.exitCode = signalExitCode(stoppedBy);
          }
        } finally {
          removeSignals();
        }
      });
    });
}

function failureLine(serverId: number, err: AppError, { isRunningElsewhere, isStopped }: typeof FetchJobs): string {
  if (isRunningElsewhere(err)) {
    const { runningJob, owner, leaseUntil } = err.details;
    const until = new Date(leaseUntil).toISOString();
    return `ALREADY RUNNING: job ${runningJob} (${owner}) is fetching this server, its fetch lease until ${until}; not fetched again. If that process was stopped, run juniper fetch ${serverId} again after ${until}.`;
  }
  if (isStopped(err)) return `STOPPED: ${err.message}`;
  return `FAILED: ${err.message}`;
}
