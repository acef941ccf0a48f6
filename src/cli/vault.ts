// `juniper vault`: which keys hold the stored secrets, and re-encrypting them all under the newest key so an
// old key can leave JUNIPER_SECRET_KEY (rotation: put the new key first, restart every process, rotate,
// check status, then drop the old key and restart again).
import { Command } from 'commander';
import type { App } from '../app.js';
import { oauthSecretSources } from '../oauth/token-secrets.js';
import { passwordSecretSources } from '../mail-servers/password-secrets.js';
import { webhookSecretSources } from '../webhooks/webhook-secrets.js';
import { settingsSecretSources } from '../settings/settings-secrets.js';
import { rotateSecrets, secretKeyCensus, type SecretSource } from '../vault/rotation.js';
import type { WithApp } from './with-app.js';

function secretSources(app: App): SecretSource[] {
  const db = app.database.db;
  return [...settingsSecretSources(db), ...passwordSecretSources(db), ...oauthSecretSources(db), ...webhookSecretSources(db)];
}

interface Status {
  keys: { id: string; encrypting: boolean }[];
  sources: { label: string; byKey: Record<string, number> }[];
  /** Secrets under a key other than the newest. */
  underOlderKeys: number;
}

async function status(app: App): Promise<Status> {
  const [newest] = app.vault.keyIds;
  const sources = await secretKeyCensus(secretSources(app));
  const underOlderKeys = sources.reduce((n, s) => n + Object.entries(s.byKey).reduce((m, [kid, c]) => m + (kid === newest ? 0 : c), 0), 0);
  return { keys: app.vault.keyIds.map((id, i) => ({ id, encrypting: i === 0 })), sources, underOlderKeys };
}

function statusText(s: Status): string {
  const lines = [`keys (newest first): ${s.keys.map((k) => (k.encrypting ? `${k.id} (encrypts)` : k.id)).join(', ')}`];
  for (const src of s.sources) {
    const parts = Object.entries(src.byKey).map(([kid, n]) => `${n} under ${kid}`);
    lines.push(`  ${src.label}: ${parts.length ? parts.join(', ') : 'none stored'}`);
  }
  const newest = s.keys[0]!.id;
  const older = s.keys.slice(1).map((k) => k.id);
  if (s.underOlderKeys > 0) lines.push(`${s.underOlderKeys} secret(s) are under an older key: run \`juniper vault rotate\`.`);
  else if (older.length) lines.push(`Every secret is under ${newest}: the older key(s) ${older.join(', ')} can be removed from JUNIPER_SECRET_KEY.`);
  else lines.push(`Every secret is under ${newest}, the only key.`);
  return lines.join('\n') + '\n';
}

export function vaultCommand(withApp: WithApp): Command {
  const vault = new Command('vault').description('the keys that encrypt stored secrets: status and rotation');

  vault
    .command('status')
    .description('which key each stored secret is encrypted with')
    .option('--json', 'JSON output', false)
    .action(async (o: { json: boolean }) => {
      const s = await withApp(status);
      process.stdout.write(o.json ? JSON.stringify(s, null, 2) + '\n' : statusText(s));
    });

  vault
    .command('rotate')
    .description('re-encrypt every stored secret under the newest key (the first of JUNIPER_SECRET_KEY)')
    .action(async () => {
      const after = await withApp(async (app) => {
        await rotateSecrets(app.vault, secretSources(app), (p) => {
          if (p.reencrypted + p.current + p.changedMeanwhile === p.total) {
            const extra = p.changedMeanwhile ? `, ${p.changedMeanwhile} changed meanwhile by a running worker (rewritten by it)` : '';
            process.stdout.write(`${p.label}: ${p.reencrypted} re-encrypted, ${p.current} already current${extra}\n`);
          }
        });
        return status(app);
      });
      process.stdout.write(statusText(after));
    });

  return vault;
}
