// `juniper servers …` and `juniper route`: outgoing mail servers and the routing decision from the shell.
import { Command } from 'commander';
import type { OutgoingServerView } from '../outgoing/servers.js';
import type { WithApp } from './with-app.js';
import { idArgument } from './args.js';
import { addServerCommands, orDefault, serverFields, tokenText, type CliField } from './server-commands.js';

const fields: CliField[] = [
  ...serverFields({
    host: 'SMTP host (Outlook: smtp.office365.com by default)',
    port: 'port (587 STARTTLS, 465 SSL, 25 none)',
    security: ['starttls', 'ssl', 'none'],
    auth: ['none', 'password', 'outlook'],
  }),
  { flags: '--from-filter <filter>', help: 'comma-separated addresses and domains this server sends for' },
  { flags: '--priority <n>', help: 'lower is tried first', as: Number },
  { flags: '--allow-self-signed', help: 'accept a self-signed certificate (private servers only)', no: 'check the certificate again (the default)' },
  { flags: '--active', help: 'use the server', no: 'keep the server but do not use it' },
  { flags: '--pool-size <n>', help: 'connections kept open to the server, or "default" (Outlook 2, others 5)', as: orDefault },
  { flags: '--rate <n>', help: 'mails a minute at most (0 = no limit), or "default" (Outlook 30, as Microsoft allows; others none)', body: 'ratePerMinute', as: orDefault },
  { flags: '--transport <transport>', help: 'Outlook: smtp, graph (Microsoft Graph sendMail), or auto (SMTP until Microsoft refuses SMTP AUTH; naming it again tries SMTP again)', choices: ['auto', 'smtp', 'graph'] },
];

function describe(s: OutgoingServerView): string {
  const token = s.auth === 'outlook' ? `${tokenText(s.token)}  transport ${s.transport}${s.transport === 'auto' ? ` (now ${s.activeTransport})` : ''}` : '';
  const state = s.archived ? 'archived' : s.active ? 'active' : 'inactive';
  return `${s.id}\t${s.name}\t${s.host}:${s.port} ${s.security}\tauth ${s.auth}${s.username ? ` as ${s.username}` : ''}\tfilter ${s.fromFilter ?? '(any)'}\tpriority ${s.priority}\tpool ${s.effectivePoolSize}\trate ${s.effectiveRatePerMinute ? `${s.effectiveRatePerMinute}/min` : 'unlimited'}\t${state}${token}\n`;
}

// The kind, the connection test and the route explainer bring the outgoing side (zod schemas, nodemailer):
// imported when a command runs, so that `--help` and the other commands do not load them.
const outgoing = () => import('../outgoing/servers.js');

export function serversCommand(withApp: WithApp): Command {
  return addServerCommands(new Command('servers').description('outgoing mail servers'), withApp, {
    kind: async () => (await outgoing()).outgoingKind,
    servers: (app) => app.services.outgoingServers,
    protocol: 'SMTP',
    fields,
    describe,
    help: {
      list: 'list outgoing mail servers in routing order',
      empty: 'No outgoing mail servers yet: juniper servers create --help\n',
      create: 'create an outgoing mail server',
      update: 'change an outgoing mail server',
      archive: 'archive a server: it stops sending at once and is kept for the record; `restore ID` brings it back',
      test: 'Test Connection: connect, TLS, sign in, MAIL FROM, RCPT TO, DATA — then abort, nothing is sent',
    },
    test: async (app, server) => {
      const { testOutgoingServer } = await import('../outgoing/connection-test.js');
      const result = await testOutgoingServer(server, { servers: app.services.outgoingServers, parameters: app.services.parameters, tokens: app.services.tokens, graphEndpoint: () => app.services.settings.graphEndpoint() });
      return { ok: result.ok, line: `${result.ok ? 'OK' : 'FAILED'}: ${result.message}\n` };
    },
  });
}

export function routeCommand(withApp: WithApp): Command {
  return new Command('route')
    .description('explain which outgoing server a mail from this address takes, and why')
    .argument('<from>', 'the From address, e.g. "John Doe <john@example.com>"')
    .option('--mass-mailing', 'as a mass mailing', false)
    .option('--server <id>', 'as if forced onto this server')
    .option('--json', 'JSON output', false)
    .action(async (from: string, o: { massMailing: boolean; server?: string; json: boolean }) => {
      const [{ outgoingKind }, { explainRoute }] = await Promise.all([outgoing(), import('../outgoing/route-explainer.js')]);
      const id = (value: string) => idArgument(value, outgoingKind.listCommand);
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
