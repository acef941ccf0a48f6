// `juniper params`: the system parameters of DESIGN §3 from the shell. Validation lives in the service,
// so a bad value fails here with the same message as in the API and the UI (the mass_mailing.* keys, Settings'
// Email Marketing choice, with Settings' refusals: settings.setParameter).
import { Command } from 'commander';
import { cliActor } from '../audit/audit-log.js';
import type { ParameterView } from '../settings/parameters.js';
import type { WithApp } from './with-app.js';

const line = (p: ParameterView) => `${p.key}\t${p.value}${p.isDefault ? '\t(default)' : ''}\n`;

export function paramsCommand(withApp: WithApp): Command {
  const params = new Command('params').description('show and change system parameters (mail.catchall.domain, web.base.url, …)');

  params
    .command('list')
    .description('list the stored parameters and the defaults of unset known ones')
    .option('--json', 'JSON output (with descriptions)', false)
    .action(async (o: { json: boolean }) => {
      const list = await withApp((app) => app.services.parameters.list());
      process.stdout.write(o.json ? JSON.stringify(list, null, 2) + '\n' : list.map(line).join(''));
    });

  params
    .command('get')
    .description('print the value of one parameter (its default when unset)')
    .argument('<key>', 'parameter key, e.g. mail.catchall.domain')
    .option('--json', 'JSON output (with description and default)', false)
    .action(async (key: string, o: { json: boolean }) => {
      const p = await withApp((app) => app.services.parameters.get(key));
      process.stdout.write(o.json ? JSON.stringify(p, null, 2) + '\n' : `${p.value}\n`);
    });

  params
    .command('set')
    .description('set a parameter; known keys are validated and normalised')
    .argument('<key>', 'parameter key')
    .argument('<value>', 'new value')
    .action(async (key: string, value: string) => {
      const p = await withApp((app) => app.services.settings.setParameter(key, value, cliActor));
      process.stdout.write(`${p.key} = ${p.value}\n`);
    });

  params
    .command('unset')
    .description('remove a parameter (known keys fall back to their default)')
    .argument('<key>', 'parameter key')
    .action(async (key: string) => {
      const removed = await withApp((app) => app.services.settings.unsetParameter(key, cliActor));
      process.stdout.write(removed ? `${key} unset.\n` : `${key} was not set; nothing changed.\n`);
    });

  return params;
}
