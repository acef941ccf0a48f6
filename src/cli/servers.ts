// `juniper servers …` and `juniper route`: outgoing mail servers and the routing decision from the shell.
import { Command, Option } from 'commander';
import { cliActor } from '../audit/audit-log.js';
import { parseInput } from '../lib/validate.js';
import { testOutgoingServer } from '../outgoing/connection-test.js';
import { explainRoute } from '../outgoing/route-explainer.js';
import { createOutgoingServerSchema, patchOutgoingServerSchema } from '../outgoing/server-rules.js';
import { outgoingServerView, type OutgoingServerView } from '../outgoing/servers.js';
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
  fromFilter?: string;
  priority?: string;
  allowSelfSigned?: boolean;
  active?: boolean;
  poolSize?: string;
  rate?: string;
}

function withServerOptions(cmd: Command): Command {
  return cmd
    .option('--name <name>', 'a name to recognise the server by')
    .option('--host <host>', 'SMTP host (Outlook: smtp.office365.com by default)')
    .option('--port <port>', 'port (587 STARTTLS, 465 SSL, 25 none)')
    .addOption(new Option('--security <security>', 'transport security').choices(['starttls', 'ssl', 'none']))
    .addOption(new Option('--auth <auth>', 'authentication').choices(['none', 'password', 'outlook']))
    .option('--username <username>', 'login (for Outlook: the mailbox address)')
    .option('--password-stdin', 'read the password from stdin (prompted on a terminal)')
    .option('--from-filter <filter>', 'comma-separated addresses and domains this server sends for')
    .option('--priority <n>', 'lower is tried first')
    .option('--allow-self-signed', 'accept a self-signed certificate (private servers only)')
    .option('--active', 'use the server')
    .option('--no-active', 'keep the server but do not use it')
    .option('--pool-size <n>', 'connections kept open to the server, or "default" (Outlook 2, others 5)')
    .option('--rate <n>', 'mails a minute at most (0 = no limit), or "default" (Outlook 30, as Microsoft allows; others none)');
}

/** A number option that may also be "default" (stored as null: the default for the server's kind). */
const orDefault = (value: string): number | null => (value === 'default' ? null : Number(value));

async function toBody(o: ServerOptions): Promise<Record<string, unknown>> {
  const body: Record<string, unknown> = {};
  if (o.name !== undefined) body.name = o.name;
  if (o.host !== undefined) body.host = o.host;
  if (o.port !== undefined) body.port = Number(o.port);
  if (o.security !== undefined) body.security = o.security;
  if (o.auth !== undefined) body.auth = o.auth;
  if (o.username !== undefined) body.username = o.username;
  if (o.passwordStdin) body.password = await readHiddenLine('SMTP password: ');
  if (o.fromFilter !== undefined) body.fromFilter = o.fromFilter;
  if (o.priority !== undefined) body.priority = Number(o.priority);
  if (o.allowSelfSigned !== undefined) body.allowSelfSigned = o.allowSelfSigned;
  if (o.active !== undefined) body.active = o.active;
  if (o.poolSize !== undefined) body.poolSize = orDefault(o.poolSize);
  if (o.rate !== undefined) body.ratePerMinute = orDefault(o.rate);
  return body;
}

function describe(s: OutgoingServerView): string {
  const token = s.auth === 'outlook' ? `  token ${s.token.status}${s.token.account ? ` (${s.token.account})` : ''}` : '';
  const state = s.archived ? 'archived' : s.active ? 'active' : 'inactive';
  return `${s.id}\t${s.name}\t${s.host}:${s.port} ${s.security}\tauth ${s.auth}${s.username ? ` as ${s.username}` : ''}\tfilter ${s.fromFilter ?? '(any)'}\tpriority ${s.priority}\tpool ${s.effectivePoolSize}\trate ${s.effectiveRatePerMinute ? `${s.effectiveRatePerMinute}/min` : 'unlimited'}\t${state}${token}\n`;
}

const id = (value: string) => idArgument(value, 'juniper servers list');

export function serversCommand(withApp: WithApp): Command {
  const servers = new Command('servers').description('outgoing mail servers');

  servers
    .command('list')
    .description('list outgoing mail servers in routing order')
    .option('--archived', 'include archived servers', false)
    .option('--json', 'JSON output', false)
    .action(async (o: { archived: boolean; json: boolean }) => {
      const rows = await withApp(async (app) => (await app.services.outgoingServers.list({ includeArchived: o.archived })).map((s) => outgoingServerView(s)));
      process.stdout.write(o.json ? JSON.stringify(rows, null, 2) + '\n' : rows.map(describe).join('') || 'No outgoing mail servers yet: juniper servers create --help\n');
    });

  withServerOptions(servers.command('create').description('create an outgoing mail server')).action(async (o: ServerOptions) => {
    const input = parseInput(createOutgoingServerSchema, await toBody(o), 'server');
    const row = await withApp((app) => app.services.outgoingServers.create(input, cliPrincipal, cliActor));
    process.stdout.write(describe(outgoingServerView(row)));
  });

  withServerOptions(servers.command('update').description('change an outgoing mail server').argument('<id>', 'server id')).action(async (sid: string, o: ServerOptions) => {
    const patch = parseInput(patchOutgoingServerSchema, await toBody(o), 'server');
    const row = await withApp((app) => app.services.outgoingServers.update(id(sid), patch, cliPrincipal, cliActor));
    process.stdout.write(describe(outgoingServerView(row)));
  });

  servers
    .command('archive')
    .description('archive a server: it is kept for the record and never used again')
    .argument('<id>', 'server id')
    .action(async (sid: string) => {
      const row = await withApp((app) => app.services.outgoingServers.archive(id(sid), cliPrincipal, cliActor));
      process.stdout.write(`Archived ${row.name} (id ${row.id}).\n`);
    });

  servers
    .command('test')
    .description('Test Connection: connect, TLS, sign in, MAIL FROM, RCPT TO, DATA — then abort, nothing is sent')
    .argument('<id>', 'server id')
    .action(async (sid: string) => {
      const result = await withApp(async (app) => {
        const server = await app.services.outgoingServers.get(id(sid));
        return testOutgoingServer(server, { servers: app.services.outgoingServers, parameters: app.services.parameters, tokens: app.services.tokens });
      });
      process.stdout.write(`${result.ok ? 'OK' : 'FAILED'}: ${result.message}\n`);
      if (!result.ok) process.exitCode = 1;
    });

  return servers;
}

export function routeCommand(withApp: WithApp): Command {
  return new Command('route')
    .description('explain which outgoing server a mail from this address takes, and why')
    .argument('<from>', 'the From address, e.g. "John Doe <john@example.com>"')
    .option('--mass-mailing', 'as a mass mailing', false)
    .option('--server <id>', 'as if forced onto this server')
    .option('--json', 'JSON output', false)
    .action(async (from: string, o: { massMailing: boolean; server?: string; json: boolean }) => {
      const r = await withApp((app) =>
        explainRoute({ from, massMailing: o.massMailing, forcedServerId: o.server ? id(o.server) : null }, { servers: app.services.outgoingServers, parameters: app.services.parameters }),
      );
      if (o.json) {
        process.stdout.write(JSON.stringify(r, null, 2) + '\n');
      } else if (r.ok) {
        process.stdout.write(
          `Server: ${r.serverName} (id ${r.serverId}), rule ${r.rule}\nFrom: ${r.from}\n${r.replyTo ? `Reply-To: ${r.replyTo}\n` : ''}Envelope sender: ${r.envelopeFrom}\n` +
            r.warnings.map((w) => `Warning: ${w}\n`).join('') +
            r.explanation.map((e) => `  - ${e}\n`).join(''),
        );
      } else {
        process.stdout.write(`No server: ${r.reason}\n` + r.explanation.map((e) => `  - ${e}\n`).join(''));
        process.exitCode = 1;
      }
    });
}
