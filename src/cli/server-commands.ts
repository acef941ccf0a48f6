// What `juniper servers …` and `juniper incoming …` share: the options of create and update, as data
// mapped to the same request body the REST API takes, and the list, show, create, update, archive, restore
// and test commands over the kind's MailServers service.
import { Option, type Command } from 'commander';
import { cliActor } from '../audit/audit-log.js';
import { parseInput } from '../lib/validate.js';
import type { CommonInput, KindName, MailServers, ServerKind, ServerRows } from '../mail-servers/mail-servers.js';
import { serverViewOf, serverViews } from '../mail-servers/server-views.js';
import { outlookAppTrouble, troubleSentences } from '../oauth/app-trouble.js';
import type { TokenView } from '../oauth/connections.js';
import type { App } from '../app.js';
import { idArgument } from './args.js';
import { cliPrincipal } from './principal.js';
import { readHiddenLine } from './prompt.js';
import type { WithApp } from './with-app.js';

/** One option of create and update: `--flag <value>` for a body field. */
export interface CliField {
  flags: string;
  help: string;
  /** The request body's field (default: the option's own name). */
  body?: string;
  as?: (value: string) => unknown;
  choices?: readonly string[];
  /** A boolean with a --no- twin, described by this. */
  no?: string;
}

/** A number option that may also be "default" (stored as null: the default for the server's kind). */
export const orDefault = (value: string): number | null => (value === 'default' ? null : Number(value));

const camel = (flags: string) => flags.replace(/^--(no-)?/, '').split(' ')[0]!.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

export function serverFields(o: { host: string; port: string; security: readonly string[]; auth: readonly string[] }): CliField[] {
  return [
    { flags: '--name <name>', help: 'a name to recognise the server by' },
    { flags: '--host <host>', help: o.host },
    { flags: '--port <port>', help: o.port, as: Number },
    { flags: '--security <security>', help: 'transport security', choices: o.security },
    { flags: '--auth <auth>', help: 'authentication', choices: o.auth },
    { flags: '--username <username>', help: 'login (for Outlook: the mailbox address)' },
    { flags: '--password-stdin', help: 'read the password from stdin (prompted on a terminal)' },
  ];
}

function withOptions(cmd: Command, fields: readonly CliField[]): Command {
  for (const f of fields) {
    cmd.addOption(f.choices ? new Option(f.flags, f.help).choices(f.choices) : new Option(f.flags, f.help));
    if (f.no) cmd.option(`--no-${f.flags.slice(2)}`, f.no);
  }
  return cmd;
}

async function toBody(o: Record<string, unknown>, fields: readonly CliField[], protocol: string): Promise<Record<string, unknown>> {
  const body: Record<string, unknown> = {};
  for (const f of fields) {
    const value = o[camel(f.flags)];
    if (value === undefined) continue;
    if (f.flags === '--password-stdin') {
      if (value) body.password = await readHiddenLine(`${protocol} password: `);
    } else {
      body[f.body ?? camel(f.flags)] = f.as && typeof value === 'string' ? f.as(value) : value;
    }
  }
  return body;
}

export interface ServerCommandSpec<K extends KindName, C extends CommonInput, P extends Partial<CommonInput>, V> {
  /** Loaded when a command runs: a kind brings its schemas and service modules, which `--help` does not need. */
  kind: () => Promise<ServerKind<K, C, P, V>>;
  servers: (app: App) => MailServers<K, C, P, V>;
  protocol: string;
  fields: readonly CliField[];
  describe(view: V): string;
  help: { list: string; empty: string; create: string; update: string; archive: string; test: string };
  /** Test Connection / Test & Confirm; the line printed says OK or FAILED. */
  test(app: App, server: ServerRows[K]): Promise<{ ok: boolean; line: string }>;
}

/** An Outlook server's token in a row of `list`/`show`: its status, and the app-wide problem that overrides it. */
export function tokenText(token: TokenView): string {
  const app = token.appProblem ? `  app problem ${token.appProblem.code ?? ''}: the Outlook app credentials need attention (Settings)` : '';
  return `  token ${token.status}${token.account ? ` (${token.account})` : ''}${app}`;
}

/** list, show, create, update, archive and test on `group`. Exit code 1 when a test fails. */
export function addServerCommands<K extends KindName, C extends CommonInput, P extends Partial<CommonInput>, V>(
  group: Command,
  withApp: WithApp,
  spec: ServerCommandSpec<K, C, P, V>,
): Command {
  const loadKind = async () => {
    const kind = await spec.kind();
    return { kind, id: (value: string) => idArgument(value, kind.listCommand) };
  };
  const print = (views: V[], json: boolean, empty: string) =>
    process.stdout.write(json ? JSON.stringify(views, null, 2) + '\n' : views.map((v) => spec.describe(v)).join('') || empty);

  group
    .command('list')
    .description(spec.help.list)
    .option('--archived', 'include archived servers', false)
    .option('--json', 'JSON output', false)
    .action(async (o: { archived: boolean; json: boolean }) => {
      const { views, notes } = await withApp(async (app) => ({
        views: await serverViews(spec.servers(app), app.services.oauthAppStatus, await spec.servers(app).list({ includeArchived: o.archived })),
        notes: troubleSentences(await outlookAppTrouble(app.services)),
      }));
      print(views, o.json, spec.help.empty);
      // Below the rows, once: the row says only "app problem <code>"; JSON carries it in each token.appProblem.
      if (!o.json && views.length > 0) for (const note of notes) process.stdout.write(`Note: ${note}\n`);
    });

  group
    .command('show')
    .description('show one server')
    .argument('<id>', 'server id')
    .option('--json', 'JSON output, as the REST API shows it', false)
    .action(async (sid: string, o: { json: boolean }) => {
      const { id } = await loadKind();
      const view = await withApp(async (app) => serverViewOf(spec.servers(app), app.services.oauthAppStatus, await spec.servers(app).get(id(sid))));
      process.stdout.write(o.json ? JSON.stringify(view, null, 2) + '\n' : spec.describe(view));
    });

  withOptions(group.command('create').description(spec.help.create), spec.fields).action(async (o: Record<string, unknown>) => {
    const { kind } = await loadKind();
    const input = parseInput(kind.createSchema, await toBody(o, spec.fields, spec.protocol), 'server');
    const view = await withApp(async (app) => serverViewOf(spec.servers(app), app.services.oauthAppStatus, await spec.servers(app).create(input, cliPrincipal, cliActor)));
    process.stdout.write(spec.describe(view));
  });

  withOptions(group.command('update').description(spec.help.update).argument('<id>', 'server id'), spec.fields).action(async (sid: string, o: Record<string, unknown>) => {
    const { kind, id } = await loadKind();
    const patch = parseInput(kind.patchSchema, await toBody(o, spec.fields, spec.protocol), 'server');
    const view = await withApp(async (app) => serverViewOf(spec.servers(app), app.services.oauthAppStatus, await spec.servers(app).update(id(sid), patch, cliPrincipal, cliActor)));
    process.stdout.write(spec.describe(view));
  });

  group
    .command('archive')
    .description(spec.help.archive)
    .argument('<id>', 'server id')
    .action(async (sid: string) => {
      const { id } = await loadKind();
      const row = await withApp((app) => spec.servers(app).archive(id(sid), cliPrincipal, cliActor));
      process.stdout.write(`Archived ${row.name} (id ${row.id}).\n`);
    });

  group
    .command('restore')
    .description('bring an archived server back, active again if it was when archived (else inactive until update ID --active), as the UI does')
    .argument('<id>', 'server id')
    .action(async (sid: string) => {
      const { id } = await loadKind();
      const row = await withApp((app) => spec.servers(app).restore(id(sid), cliPrincipal, cliActor));
      process.stdout.write(`Restored ${row.name} (id ${row.id}); ${row.active ? 'active' : 'inactive until update ' + row.id + ' --active'}.\n`);
    });

  group
    .command('test')
    .description(spec.help.test)
    .argument('<id>', 'server id')
    .action(async (sid: string) => {
      const { id } = await loadKind();
      const result = await withApp(async (app) => spec.test(app, await spec.servers(app).get(id(sid))));
      process.stdout.write(result.line);
      if (!result.ok) process.exitCode = 1;
    });

  return group;
}
