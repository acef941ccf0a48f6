// `juniper settings`: the settings page from the shell. The client secret is read from stdin (hidden on
// a terminal) so that it never lands in shell history or in `ps` output.
import { Command, Option } from 'commander';
import { cliActor } from '../audit/audit-log.js';
import { AppError } from '../lib/errors.js';
import { got, parseBoolean } from '../settings/parameter-rules.js';
import { clouds, type Cloud } from '../settings/clouds.js';
import type { SettingsPatch, SettingsView } from '../settings/settings.js';
import type { CredentialsCheck } from '../oauth/credentials-check.js';
import { readHiddenLine } from './prompt.js';
import type { WithApp } from './with-app.js';

interface SetOptions {
  customEmailServers?: string;
  outlook?: string;
  clientId?: string;
  clientSecretStdin?: boolean;
  clearClientSecret?: boolean;
  secretExpires?: string;
  cloud?: Cloud;
  tenant?: string;
  dedicatedMassMailing?: string;
  massMailingServer?: string;
}

function onOff(flag: string, value: string | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  const b = parseBoolean(value);
  if (b === undefined) throw new AppError('JUNIPER_ERR_VALIDATION', `${flag} must be on or off ${got(value)}`);
  return b;
}

function serverId(value: string | undefined): number | null | undefined {
  if (value === undefined) return undefined;
  if (value === 'none') return null;
  if (!/^[1-9][0-9]{0,9}$/.test(value)) {
    throw new AppError('JUNIPER_ERR_VALIDATION', `--mass-mailing-server must be an outgoing server id or none ${got(value)}`);
  }
  return Number(value);
}

async function readSecret(): Promise<string> {
  const secret = (await readHiddenLine('Client secret (Value from Certificates & secrets): ')).trim();
  // An empty pipe is far more likely a mistake than a wish to remove the secret.
  if (secret === '') throw new AppError('JUNIPER_ERR_VALIDATION', 'No client secret on stdin; to remove the stored one use --clear-client-secret.');
  return secret;
}

async function toPatch(o: SetOptions): Promise<SettingsPatch> {
  if (o.clientSecretStdin && o.clearClientSecret) {
    throw new AppError('JUNIPER_ERR_VALIDATION', 'Give either --client-secret-stdin or --clear-client-secret, not both.');
  }
  const outlook: NonNullable<SettingsPatch['outlook']> = {
    enabled: onOff('--outlook', o.outlook),
    clientId: o.clientId,
    clientSecret: o.clientSecretStdin ? await readSecret() : o.clearClientSecret ? null : undefined,
    clientSecretExpiresAt: o.secretExpires === 'none' ? null : o.secretExpires,
    cloud: o.cloud,
    tenant: o.tenant,
  };
  const massMailing = { dedicatedServer: onOff('--dedicated-mass-mailing', o.dedicatedMassMailing), serverId: serverId(o.massMailingServer) };
  const patch: SettingsPatch = {
    customEmailServers: onOff('--custom-email-servers', o.customEmailServers),
    outlook: Object.values(outlook).some((v) => v !== undefined) ? outlook : undefined,
    massMailing: Object.values(massMailing).some((v) => v !== undefined) ? massMailing : undefined,
  };
  if (Object.values(patch).every((v) => v === undefined)) {
    throw new AppError('JUNIPER_ERR_VALIDATION', 'Nothing to change: give at least one option (see `juniper settings set --help`).');
  }
  return patch;
}

export function formatSettings(s: SettingsView): string {
  const o = s.outlook;
  const expiry =
    o.clientSecretExpiresAt === null
      ? ''
      : o.clientSecretDaysLeft !== null && o.clientSecretDaysLeft < 0
        ? ` (EXPIRED on ${o.clientSecretExpiresAt}: create a new one in Azure)`
        : ` (expires ${o.clientSecretExpiresAt}, in ${o.clientSecretDaysLeft} days)`;
  const mass = s.massMailing.dedicatedServer ? `dedicated server ${s.massMailing.serverId}` : 'routed like other mail';
  return [
    `Custom email servers:  ${s.customEmailServers ? 'on' : 'off'}`,
    `Microsoft Outlook:     ${o.enabled ? 'enabled' : 'disabled'}`,
    `  Client ID:           ${o.clientId ?? '(not set)'}`,
    `  Client secret:       ${o.hasClientSecret ? 'set' : '(not set)'}${expiry}`,
    `  Cloud / tenant:      ${o.cloud} / ${o.tenant}`,
    `  Authority:           ${o.authority}`,
    `  Redirect URI:        ${o.redirectUri ?? '(set the parameter web.base.url first)'}`,
    `Mass mailing:          ${mass}`,
    '',
  ].join('\n');
}

const CHECK_LABELS: Record<CredentialsCheck['result'], string> = { ok: 'OK', failed: 'FAILED', skipped: 'skipped' };

/** After the settings: the saved settings stand whatever it says (the exit status stays 0). */
export function formatCredentialsCheck(c: CredentialsCheck): string {
  return `Credentials check:     ${CHECK_LABELS[c.result]}${c.code ? ` (${c.code})` : ''}: ${c.message}\n`;
}

export function settingsCommand(withApp: WithApp): Command {
  const settings = new Command('settings').description('show and change the settings (Custom Email Servers, Outlook credentials)');

  settings
    .command('show')
    .description('show the settings (the client secret is never shown)')
    .option('--json', 'JSON output, as GET /api/v1/settings', false)
    .action(async (o: { json: boolean }) => {
      const view = await withApp((app) => app.services.settings.get());
      process.stdout.write(o.json ? JSON.stringify(view, null, 2) + '\n' : formatSettings(view));
    });

  settings
    .command('set')
    .description('change the given settings; the others stay as they are')
    .option('--custom-email-servers <on|off>', 'the Custom Email Servers checkbox')
    .option('--outlook <on|off>', 'the Microsoft Outlook app')
    .option('--client-id <id>', 'Application (client) ID from Azure (a GUID; empty to clear)')
    .option('--client-secret-stdin', 'read the client secret Value from stdin (hidden prompt on a terminal)')
    .option('--clear-client-secret', 'remove the stored client secret')
    .option('--secret-expires <YYYY-MM-DD|none>', "the client secret's expiry date, for warnings")
    .addOption(new Option('--cloud <cloud>', 'Microsoft cloud').choices(clouds))
    .option('--tenant <tenant>', 'common, organizations, consumers, a tenant id or a verified domain')
    .option('--dedicated-mass-mailing <on|off>', 'send mass mailings through one dedicated server')
    .option('--mass-mailing-server <id|none>', 'the outgoing server id for mass mailings')
    .action(async (o: SetOptions) => {
      const patch = await toPatch(o);
      const { settings: view, credentialsCheck } = await withApp((app) => app.services.settings.updateAndCheck(patch, cliActor));
      process.stdout.write(formatSettings(view) + (credentialsCheck ? formatCredentialsCheck(credentialsCheck) : ''));
    });

  return settings;
}
