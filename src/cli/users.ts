import { Command, Option } from 'commander';
import { cliActor } from '../audit/audit-log.js';
import { AppError } from '../lib/errors.js';
import { randomToken } from '../vault/hmac.js';
import { readHiddenLine } from './prompt.js';
import type { WithApp } from './with-app.js';

async function choosePassword(given: string | undefined): Promise<{ password: string; generated: boolean }> {
  if (given !== undefined) return { password: given, generated: false };
  if (process.stdin.isTTY) {
    const a = await readHiddenLine('Password (empty to generate one): ');
    if (a === '') return { password: randomToken(15), generated: true };
    const b = await readHiddenLine('Repeat the password: ');
    if (a !== b) throw new AppError('JUNIPER_ERR_VALIDATION', 'The two passwords differ; nothing was created.');
    return { password: a, generated: false };
  }
  return { password: randomToken(15), generated: true };
}

export function usersCommand(withApp: WithApp): Command {
  const users = new Command('users').description('manage users');
  users
    .command('create')
    .description('create a user (prompts for a password on a terminal, else generates one and prints it)')
    .requiredOption('--login <login>', 'login name')
    .requiredOption('--email <email>', 'email address')
    .option('--name <name>', 'display name (default: the login)')
    .option('--admin', 'give the admin role', false)
    .addOption(new Option('--password <password>', 'password (avoid: it lands in shell history)').env('JUNIPER_NEW_PASSWORD'))
    .action(async (o: { login: string; email: string; name?: string; admin: boolean; password?: string }) => {
      const { password, generated } = await choosePassword(o.password);
      const user = await withApp((app) =>
        app.services.users.create({ login: o.login, email: o.email, name: o.name, password, role: o.admin ? 'admin' : 'user' }, cliActor),
      );
      process.stdout.write(`Created ${user.role} ${user.login} (id ${user.id}).\n`);
      if (generated) process.stdout.write(`Generated password: ${password}\n`);
    });
  users
    .command('list')
    .description('list users')
    .option('--json', 'JSON output', false)
    .action(async (o: { json: boolean }) => {
      const list = await withApp((app) => app.services.users.list());
      if (o.json) process.stdout.write(JSON.stringify(list, null, 2) + '\n');
      else for (const u of list) process.stdout.write(`${u.id}\t${u.login}\t${u.email}\t${u.role}${u.active ? '' : '\t(disabled)'}\n`);
    });
  users
    .command('password')
    .description("set a user's password (ends their sessions)")
    .requiredOption('--login <login>', 'login name')
    .addOption(new Option('--password <password>', 'new password').env('JUNIPER_NEW_PASSWORD'))
    .action(async (o: { login: string; password?: string }) => {
      const { password, generated } = await choosePassword(o.password);
      await withApp((app) => app.services.users.setPassword(o.login, password, cliActor));
      process.stdout.write(`Password of ${o.login} changed.\n`);
      if (generated) process.stdout.write(`Generated password: ${password}\n`);
    });
  return users;
}

export function apiKeysCommand(withApp: WithApp): Command {
  const keys = new Command('api-keys').description('manage API keys');
  keys
    .command('create')
    .description('create an API key for a user; prints only the key (shown this once)')
    .requiredOption('--user <login>', 'the user the key acts as')
    .option('--name <name>', 'what the key is for', 'api key')
    .action(async (o: { user: string; name: string }) => {
      const key = await withApp(async (app) => {
        const user = await app.services.users.requireByLogin(o.user);
        return (await app.services.apiKeys.create(user, o.name, cliActor)).key;
      });
      process.stdout.write(`${key}\n`);
    });
  keys
    .command('list')
    .description('list API keys (prefixes only)')
    .option('--user <login>', 'only this user')
    .option('--json', 'JSON output, as GET /api/v1/api-keys', false)
    .action(async (o: { user?: string; json: boolean }) => {
      const { list, logins } = await withApp(async (app) => {
        const user = o.user ? await app.services.users.requireByLogin(o.user) : undefined;
        const users = await app.services.users.list();
        return { list: await app.services.apiKeys.list(user?.id), logins: new Map(users.map((u) => [u.id, u.login])) };
      });
      if (o.json) process.stdout.write(JSON.stringify(list, null, 2) + '\n');
      else for (const k of list) process.stdout.write(`${k.id}\t${k.prefix}…\t${logins.get(k.userId) ?? `user ${k.userId}`}\t${k.name}\t${k.revoked ? 'revoked' : k.lastUsedAt ? `last used ${k.lastUsedAt}` : 'never used'}\n`);
    });
  keys
    .command('revoke')
    .description('revoke an API key by id')
    .argument('<id>', 'key id from `juniper api-keys list`')
    .action(async (id: string) => {
      await withApp((app) => app.services.apiKeys.revoke(Number(id), cliActor));
      process.stdout.write(`API key ${id} revoked.\n`);
    });
  return keys;
}
