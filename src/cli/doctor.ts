// `juniper doctor`: checks the configuration and prints what to fix, one line each; exit code 1 when
// something fails (mail does not flow, or is about to stop), so it fits a monitoring check or a deploy script.
// It opens the database without migrating: a pending migration is a finding, not something to do silently.
import { Command } from 'commander';
import type { App } from '../app.js';
import type { Finding } from '../doctor/diagnose.js';
import { isAppError } from '../lib/errors.js';

const LABEL = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' } as const;

async function findingsOf(openApp: () => Promise<App>): Promise<Finding[]> {
  let app: App;
  try {
    app = await openApp();
  } catch (e) {
    return [{ level: 'fail', check: 'database', message: `Cannot open the database or the vault: ${isAppError(e) ? e.message : (e as Error).message}` }];
  }
  try {
    // Imported here, as the app is: the checks' modules load with `juniper doctor` only, not with every command.
    const [{ diagnose }, { doctorFacts }] = await Promise.all([import('../doctor/diagnose.js'), import('../doctor/facts.js')]);
    const { pending, facts } = await doctorFacts(app);
    if (facts) return diagnose(facts);
    return [{ level: 'fail', check: 'migrations', message: `${pending.length} migration(s) not applied (${pending.join(', ')}): run \`juniper migrate\`; the other checks need the current schema.` }];
  } catch (e) {
    return [{ level: 'fail', check: 'database', message: `The database did not answer: ${isAppError(e) ? e.message : (e as Error).message}. Check DATABASE_URL and that the database server runs.` }];
  } finally {
    await app.close();
  }
}

export function doctorCommand(openApp: () => Promise<App>): Command {
  return new Command('doctor')
    .description('check the configuration (base URL, Outlook credentials and secret expiry, servers, tokens, clock, database) and print what to fix')
    .option('--json', 'JSON output', false)
    .action(async (o: { json: boolean }) => {
      const findings = await findingsOf(openApp);
      const { exitCodeOf } = await import('../doctor/diagnose.js');
      process.stdout.write(o.json ? JSON.stringify(findings, null, 2) + '\n' : findings.map((f) => `${LABEL[f.level]}  ${f.check}: ${f.message}\n`).join(''));
      process.exitCode = exitCodeOf(findings);
    });
}
