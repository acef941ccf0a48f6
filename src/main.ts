// CLI entry and the only module that starts anything: listening sockets, timers, background jobs.
// Everything past commander, the command definitions and the configuration is imported when a command runs
// (await import below): `--help`, and every command that needs no app or no HTTP, start without loading them.
import { Command, CommanderError } from 'commander';
import type { App, CreateAppOptions } from './app.js';
import type { Config } from './config.js';
import { isAppError } from './lib/errors.js';
import { apiKeysCommand, usersCommand } from './cli/users.js';
import { paramsCommand } from './cli/params.js';
import { settingsCommand } from './cli/settings.js';
import { routeCommand, serversCommand } from './cli/servers.js';
import { mailsCommand, sendCommand } from './cli/mails.js';
import { fetchCommand, incomingCommand } from './cli/incoming.js';
import { vaultCommand } from './cli/vault.js';
import { doctorCommand } from './cli/doctor.js';
import type { WithApp } from './cli/with-app.js';
import { guardTerminalOutput } from './cli/terminal-text.js';

const VERSION = '0.1.0';

const loadConfig = async (): Promise<Config> => (await import('./config.js')).loadConfig();

/** createApp for a CLI command: results on stdout, logs on stderr and only from warnings up. */
async function openCliApp(config: Config, options: Omit<CreateAppOptions, 'logger'>): Promise<App> {
  const [{ createApp }, { createLogger, stderrDestination }] = await Promise.all([import('./app.js'), import('./lib/logger.js')]);
  // No metrics: nobody scrapes a one-shot command (serve and worker make their apps themselves).
  return createApp(config, { logger: createLogger('warn', stderrDestination()), metrics: false, ...options });
}

function cliApp(config: Config, vaultMode: 'open' | 'inspect' = 'open'): WithApp {
  return async (fn) => {
    const app = await openCliApp(config, { vaultMode });
    try {
      return await fn(app);
    } finally {
      await app.close();
    }
  };
}

/**
 * Seeds web.base.url from JUNIPER_BASE_URL while unset (the parameter wins afterwards, as README documents: an
 * admin may have changed it since), says so in the log when the two differ, and returns the address to print
 * once the port is known (JUNIPER_PORT=0 asks for any free one).
 */
async function baseUrlOf(app: App): Promise<(listeningPort: number) => string> {
  const { addressPeopleUse, ignoredBaseUrlEnv, ignoredBaseUrlEnvMessage } = await import('./settings/public-address.js');
  const { config } = app;
  const seeded = config.baseUrl ? await app.services.parameters.seedIfUnset('web.base.url', config.baseUrl) : false;
  const stored = await app.services.parameters.value('web.base.url');
  const ignored = seeded ? null : ignoredBaseUrlEnv(config.baseUrl, stored);
  if (ignored && stored) app.logger.warn({ op: 'config.base_url', env: ignored, parameter: stored }, ignoredBaseUrlEnvMessage(ignored, stored));
  return (listeningPort) => addressPeopleUse(stored, config.host, listeningPort);
}

/** How long serve tries to close cleanly after its workers thread died, before it exits regardless. */
const DIED_EXIT_MS = 10_000;

function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => resolve(sig));
  });
}

async function serve(config: Config, options: { workers: boolean; workersThread: boolean }): Promise<void> {
  const [{ createApp }, { describeDatabase }, { startMetricsServerFromEnv }] = await Promise.all([import('./app.js'), import('./db/database.js'), import('./metrics/metrics-server.js')]);
  const app = await createApp(config);
  const log = app.logger;
  const http = await app.http();
  // Seeded before the first request can arrive; printed with the port the server really got.
  const addressFor = await baseUrlOf(app);
  await http.listen({ port: config.port, host: config.host });
  const address = http.server.address();
  const baseUrl = addressFor(typeof address === 'object' && address ? address.port : config.port);
  log.info({ database: describeDatabase(config.database), dataDir: config.dataDir, vaultKey: app.vault.source }, `Juniper listening on ${baseUrl}`);
  const setupToken = await app.services.firstRun.issueIfNeeded();
  if (setupToken) {
    // On stderr, apart from the JSON logs on stdout: a log shipper should not carry a working setup link around.
    process.stderr.write(
      `\nNo admin exists yet. Open this one-time link to create one:\n  ${baseUrl}/setup?token=${setupToken}\n` +
        `(or run: juniper users create --admin --login LOGIN --email EMAIL)\n\n`,
    );
  }
  // Listening for signals first: a SIGTERM while the workers thread starts stops it as soon as it has started,
  // rather than killing the process with nothing recorded (a start that hangs is left to the service manager's SIGKILL).
  const signalled = untilSignal();
  let workers: Awaited<ReturnType<typeof startServeWorkers>>;
  try {
    workers = await startServeWorkers(app, options);
  } catch (e) {
    // The web alone would take mail it never sends: stop listening, so that the process ends with the error.
    await http.close();
    await app.close();
    throw e;
  }
  const metricsServer = await startMetricsServerFromEnv(app);
  const ended = await Promise.race([signalled, workers?.died ?? new Promise<never>(() => {})]);
  if (ended instanceof Error) {
    // Web without workers would take mail it never sends; a service manager restarts the whole process, and
    // the mails the thread held go out again when their lease ends (as after a worker process's crash). Whatever
    // ended the thread may hold up a clean close (the database): the process ends within DIED_EXIT_MS anyway.
    log.fatal({ err: ended, op: 'workers.died' }, `the background workers stopped unexpectedly (${ended.message}): Juniper exits so that its service manager restarts it`);
    process.exitCode = 1;
    setTimeout(() => process.exit(1), DIED_EXIT_MS).unref();
  } else log.info(`${ended} received, shutting down`);
  await metricsServer?.close();
  await http.close();
  await workers?.stop();
  await app.close();
}

/**
 * serve's workers: on this thread by default; in a thread of their own with --workers-thread (the second core
 * sends and fetches while this one answers: in the benchmark, with the SMTP sink in the same process on 2
 * cores, that was slower end to end, 0.60x against 0.64x raw on SQLite, so it is not the default); none with
 * --no-workers (on a machine of its own, `juniper worker` processes do it).
 */
async function startServeWorkers(app: App, options: { workers: boolean; workersThread: boolean }): Promise<{ died?: Promise<Error>; stop(): Promise<void> } | undefined> {
  const log = app.logger;
  if (!options.workers) {
    log.info('no background workers in this process (--no-workers): mail is sent and fetched by juniper worker processes');
    return undefined;
  }
  if (!options.workersThread) {
    const { createWorkers } = await import('./worker/workers.js');
    const workers = createWorkers(app);
    workers.start();
    log.info({ owner: workers.dispatcher.owner, workers: 'main thread' }, 'Juniper workers started on the web\'s own thread');
    return workers;
  }
  const { startThreadWorkers } = await import('./worker/thread-workers.js');
  const workers = await startThreadWorkers(app);
  app.services.metrics.addThread(() => workers.counters());
  log.info({ owner: workers.owner, workers: 'thread' }, 'Juniper workers started in their own thread (--workers-thread)');
  return workers;
}

async function worker(config: Config): Promise<void> {
  const [{ createApp }, { describeDatabase }, { startMetricsServerFromEnv }, { createWorkers }] = await Promise.all([
    import('./app.js'),
    import('./db/database.js'),
    import('./metrics/metrics-server.js'),
    import('./worker/workers.js'),
  ]);
  const app = await createApp(config);
  const workers = createWorkers(app);
  workers.start();
  app.logger.info({ database: describeDatabase(config.database), owner: workers.dispatcher.owner }, 'Juniper worker started');
  const metricsServer = await startMetricsServerFromEnv(app);
  const sig = await untilSignal();
  app.logger.info(`${sig} received, shutting down`);
  await metricsServer?.close();
  await workers.stop();
  await app.close();
}

export function buildProgram(): Command {
  const program = new Command('juniper')
    .description('Juniper mail gateway: Microsoft 365 / Outlook OAuth, SMTP and IMAP for your business database')
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride();
  // Each action loads the configuration itself, so `--help` works without a valid environment (and without
  // loading the configuration's zod schemas).
  const withApp: WithApp = async (fn) => cliApp(await loadConfig())(fn);
  // Read-only about the vault: reports a lost key instead of refusing, and never creates one.
  const withInspectApp: WithApp = async (fn) => cliApp(await loadConfig(), 'inspect')(fn);

  program
    .command('serve')
    .description('run the web UI, the REST API and the background workers (default port 8080)')
    .option('--no-workers', 'the web UI and REST API only: mail is sent and fetched by `juniper worker` processes')
    .option('--workers-thread', 'the background workers in a thread of their own beside the web\'s (two cores; about 40 MB more)')
    .action(async (o: { workers: boolean; workersThread?: boolean }) => serve(await loadConfig(), { workers: o.workers, workersThread: o.workersThread === true }));
  program
    .command('worker')
    .description('run only the background workers (for a second process sharing a PostgreSQL database)')
    .action(async () => worker(await loadConfig()));
  program
    .command('migrate')
    .description('bring the database schema up to date (serve and worker also do this at start)')
    .action(async () => {
      const config = await loadConfig();
      const [{ describeDatabase, openDatabase }, { migrateToLatest }] = await Promise.all([import('./db/database.js'), import('./db/migrate.js')]);
      const database = openDatabase(config.database);
      try {
        const { applied } = await migrateToLatest(database);
        process.stdout.write(applied.length ? `Applied: ${applied.join(', ')}\n` : `${describeDatabase(config.database)} is up to date.\n`);
      } finally {
        await database.close();
      }
    });
  program.addCommand(usersCommand(withApp));
  program.addCommand(apiKeysCommand(withApp));
  program.addCommand(paramsCommand(withApp));
  program.addCommand(settingsCommand(withApp));
  program.addCommand(serversCommand(withApp));
  program.addCommand(routeCommand(withApp));
  program.addCommand(sendCommand(withApp));
  program.addCommand(mailsCommand(withApp));
  program.addCommand(incomingCommand(withApp));
  program.addCommand(fetchCommand(withApp));
  program.addCommand(vaultCommand(withApp, withInspectApp));
  program.addCommand(doctorCommand(async () => openCliApp(await loadConfig(), { migrate: false, vaultMode: 'inspect' })));
  return program;
}

/** Runs the CLI; resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  // Server names, key names and mail servers' replies come from users and peers: no control character of theirs
  // reaches the terminal (terminal-text.ts). JSON logs go to fd 2 directly and escape them themselves.
  const unguard = [guardTerminalOutput(process.stdout), guardTerminalOutput(process.stderr)];
  try {
    await program.parseAsync(argv, { from: 'user' });
    // Commands that report a failure without throwing (`servers test`, `fetch`) set process.exitCode; bin/juniper.js
    // assigns what main returns, so returning 0 here would turn their failure into success.
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    if (isAppError(e)) {
      process.stderr.write(`juniper: ${e.message}\n`);
      return 1;
    }
    process.stderr.write(`juniper: unexpected error: ${(e as Error).stack ?? String(e)}\n`);
    return 1;
  } finally {
    for (const restore of unguard) restore();
  }
}
