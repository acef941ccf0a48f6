// `juniper incoming …` (incoming mail servers) and `juniper fetch [ID]` (fetch now, with a progress bar on a
// terminal and one plain line per server otherwise, so logs and cron mails stay readable).
import { Command, Option } from 'commander';
import { cliActor } from '../audit/audit-log.js';
import type { FetchCounts, FetchProgress } from '../incoming/fetcher.js';
import { createIncomingServerSchema, patchIncomingServerSchema } from '../incoming/server-rules.js';
import { incomingServerView, type IncomingServerView } from '../incoming/servers.js';
import { isAppError } from '../lib/errors.js';
import { parseInput } from '../lib/validate.js';
import { cliPrincipal } from './principal.js';
import { readHiddenLine } from './prompt.js';
import type { WithApp } from './with-app.js';
import { idArgument } from './args.js';

interface ServerOptions {
  name?: string;
  host?: string;
  port?: string;
  security?: string;
  auth?: string;
  username?: string;
  passwordStdin?: boolean;
  folder?: string;
  keepOriginal?: boolean;
  keepAttachments?: boolean;
  priority?: string;
  interval?: string;
  allowSelfSigned?: boolean;
  active?: boolean;
}

function withServerOptions(cmd: Command): Command {
  return cmd
    .option('--name <name>', 'a name to recognise the server by')
    .option('--host <host>', 'IMAP host (Outlook: outlook.office365.com by default)')
    .option('--port <port>', 'port (993 SSL/TLS, 143 STARTTLS)')
    .addOption(new Option('--security <security>', 'transport security').choices(['ssl', 'starttls', 'none']))
    .addOption(new Option('--auth <auth>', 'authentication').choices(['password', 'outlook']))
    .option('--username <username>', 'login (for Outlook: the mailbox address)')
    .option('--password-stdin', 'read the password from stdin (prompted on a terminal)')
    .option('--folder <folder>', 'folder to fetch (default INBOX)')
    .option('--keep-original', 'keep the original .eml of every message')
    .option('--no-keep-original', 'do not keep the original .eml')
    .option('--keep-attachments', 'keep attachments (default)')
    .option('--no-keep-attachments', 'record attachments by name and size only')
    .option('--priority <n>', 'lower is fetched first')
    .option('--interval <minutes>', 'fetch every N minutes (default 5)')
    .option('--allow-self-signed', 'accept a self-signed certificate (private servers only)')
    .option('--active', 'fetch the server')
    .option('--no-active', 'keep the server but do not fetch it');
}

async function toBody(o: ServerOptions): Promise<Record<string, unknown>> {
  const body: Record<string, unknown> = {};
  if (o.name !== undefined) body.name = o.name;
  if (o.host !== undefined) body.host = o.host;
  if (o.port !== undefined) body.port = Number(o.port);
  if (o.security !== undefined) body.security = o.security;
  if (o.auth !== undefined) body.auth = o.auth;
  if (o.username !== undefined) body.username = o.username;
  if (o.passwordStdin) body.password = await readHiddenLine('IMAP password: ');
  if (o.folder !== undefined) body.folder = o.folder;
  if (o.keepOriginal !== undefined) body.keepOriginal = o.keepOriginal;
  if (o.keepAttachments !== undefined) body.keepAttachments = o.keepAttachments;
  if (o.priority !== undefined) body.priority = Number(o.priority);
  if (o.interval !== undefined) body.intervalMinutes = Number(o.interval);
  if (o.allowSelfSigned !== undefined) body.allowSelfSigned = o.allowSelfSigned;
  if (o.active !== undefined) body.active = o.active;
  return body;
}

function describe(s: IncomingServerView): string {
  const token = s.auth === 'outlook' ? `  token ${s.token.status}${s.token.account ? ` (${s.token.account})` : ''}` : '';
  const state = s.archived ? 'archived' : !s.active ? 'inactive' : s.state;
  const error = s.lastError ? `  failing since ${s.errorSince}: ${s.lastError}` : '';
  return `${s.id}\t${s.name}\t${s.host}:${s.port} ${s.security}\tauth ${s.auth}${s.username ? ` as ${s.username}` : ''}\tfolder ${s.folder}\tevery ${s.intervalMinutes} min\t${state}${token}${error}\n`;
}

const id = (value: string) => idArgument(value, 'juniper incoming list');

export function incomingCommand(withApp: WithApp): Command {
  const incoming = new Command('incoming').description('incoming (IMAP) mail servers');

  incoming
    .command('list')
    .description('list incoming mail servers')
    .option('--archived', 'include archived servers', false)
    .option('--json', 'JSON output', false)
    .action(async (o: { archived: boolean; json: boolean }) => {
      const rows = await withApp(async (app) => (await app.services.incomingServers.list({ includeArchived: o.archived })).map((s) => incomingServerView(s)));
      process.stdout.write(o.json ? JSON.stringify(rows, null, 2) + '\n' : rows.map(describe).join('') || 'No incoming mail servers yet: juniper incoming create --help\n');
    });

  withServerOptions(incoming.command('create').description('create an incoming mail server (a draft until `juniper incoming test ID`)')).action(async (o: ServerOptions) => {
    const input = parseInput(createIncomingServerSchema, await toBody(o), 'server');
    const row = await withApp((app) => app.services.incomingServers.create(input, cliPrincipal, cliActor));
    process.stdout.write(describe(incomingServerView(row)));
  });

  withServerOptions(incoming.command('update').description('change an incoming mail server').argument('<id>', 'server id')).action(async (sid: string, o: ServerOptions) => {
    const patch = parseInput(patchIncomingServerSchema, await toBody(o), 'server');
    const row = await withApp((app) => app.services.incomingServers.update(id(sid), patch, cliPrincipal, cliActor));
    process.stdout.write(describe(incomingServerView(row)));
  });

  incoming
    .command('archive')
    .description('archive a server: its messages stay, it is never fetched again')
    .argument('<id>', 'server id')
    .action(async (sid: string) => {
      const row = await withApp((app) => app.services.incomingServers.archive(id(sid), cliPrincipal, cliActor));
      process.stdout.write(`Archived ${row.name} (id ${row.id}).\n`);
    });

  incoming
    .command('test')
    .description('Test & Confirm: connect, sign in, open the folder; on success the server is confirmed and fetched on its interval')
    .argument('<id>', 'server id')
    .action(async (sid: string) => {
      const result = await withApp(async (app) => app.services.incoming.testAndConfirm(await app.services.incomingServers.get(id(sid))));
      process.stdout.write(`${result.ok ? 'OK' : `FAILED (${result.stage})`}: ${result.message}\n`);
      if (!result.ok) process.exitCode = 1;
    });

  return incoming;
}

const summary = (c: FetchCounts) => `fetched ${c.fetched}, stored ${c.stored}, duplicates ${c.duplicates}, quarantined ${c.quarantined}`;

/** A one-line bar redrawn in place: `[#######-------]  70/200  Orders`. */
function progressBar(p: FetchProgress, width = 30): string {
  const ratio = p.total === 0 ? 1 : p.fetched / p.total;
  const filled = Math.round(ratio * width);
  return `\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(p.fetched).padStart(String(p.total).length)}/${p.total}  ${p.serverName}\x1b[K`;
}

export function fetchCommand(withApp: WithApp): Command {
  return new Command('fetch')
    .description('fetch incoming mail now: one server, or every confirmed active server')
    .argument('[id]', 'server id (default: all confirmed, active servers)')
    .action(async (sid: string | undefined) => {
      const tty = process.stderr.isTTY === true;
      await withApp(async (app) => {
        const { incomingServers, incoming } = app.services;
        const servers = sid
          ? [await incomingServers.get(id(sid))]
          : (await incomingServers.list()).filter((s) => s.state === 'confirmed' && s.active === 1);
        if (servers.length === 0) process.stdout.write('No confirmed, active incoming servers: juniper incoming test ID confirms one.\n');
        for (const server of servers) {
          const onProgress = tty ? (p: FetchProgress) => process.stderr.write(progressBar(p)) : undefined;
          try {
            const counts = await incoming.fetchNow(server, onProgress ? { onProgress } : {});
            if (tty) process.stderr.write('\n');
            process.stdout.write(`${server.id}\t${server.name}\t${summary(counts)}\n`);
          } catch (err) {
            if (tty) process.stderr.write('\n');
            if (!isAppError(err)) throw err;
            process.stdout.write(`${server.id}\t${server.name}\tFAILED: ${err.message}\n`);
            process.exitCode = 1;
          }
        }
      });
    });
}
