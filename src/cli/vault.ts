// `juniper vault`: which keys hold the stored secrets, and re-encrypting them all under the newest key so an
// old key can leave JUNIPER_SECRET_KEY (rotation: put the new key first, restart every process, rotate,
// check status, then drop the old key and restart again). `status` and `forget` open the app without the
// startup key check (and never create a key), because they are how a lost key is found and dealt with.
import { Command } from 'commander';
import type { App } from '../app.js';
import { AppError } from '../lib/errors.js';
import { rotateSecrets, secretKeyCensus } from '../vault/rotation.js';
import { checkVaultKeys, describeKeySource, MISSING_KEY_ADVICE, missingKeysText, SECRET_KEY_ENV } from '../vault/index.js';
import type { WithApp } from './with-app.js';

interface Status {
  keys: { id: string; encrypting: boolean }[];
  /** Where the keys were looked for. */
  keySource: string;
  sources: { label: string; byKey: Record<string, number> }[];
  /** Secrets under a configured key other than the newest. */
  underOlderKeys: number;
  /** Key ids stored secrets need that are not configured. */
  missing: { keyId: string; count: number }[];
}

// The stored secrets' modules (every store's, so most of the services) load with the app, not with `--help`.
const storedSecrets = () => import('../stored-secrets.js');

async function status(app: App): Promise<Status> {
  const { storedSecretSources } = await storedSecrets();
  const configured = app.vaultKeys.source.configured;
  const sources = await secretKeyCensus(storedSecretSources(app.database.db));
  const missing = new Map<string, number>();
  let underOlderKeys = 0;
  for (const s of sources) {
    for (const [kid, n] of Object.entries(s.byKey)) {
      if (!configured.includes(kid)) missing.set(kid, (missing.get(kid) ?? 0) + n);
      else if (kid !== configured[0]) underOlderKeys += n;
    }
  }
  return {
    keys: configured.map((id, i) => ({ id, encrypting: i === 0 })),
    keySource: describeKeySource(app.vaultKeys.source),
    sources,
    underOlderKeys,
    missing: [...missing].map(([keyId, count]) => ({ keyId, count })),
  };
}

function statusText(s: Status): string {
  const lines = [s.keys.length ? `keys (newest first): ${s.keys.map((k) => (k.encrypting ? `${k.id} (encrypts)` : k.id)).join(', ')}` : 'keys: none configured', `looked in: ${s.keySource}`];
  for (const src of s.sources) {
    const parts = Object.entries(src.byKey).map(([kid, n]) => `${n} under ${kid}${s.keys.some((k) => k.id === kid) ? '' : ' (not configured)'}`);
    lines.push(`  ${src.label}: ${parts.length ? parts.join(', ') : 'none stored'}`);
  }
  const older = s.keys.slice(1).map((k) => k.id);
  // A missing key comes first: rotating cannot help with it, and dropping an old key now would lose more.
  if (s.missing.length) lines.push(`${missingKeysText(s.missing)}: they cannot be decrypted. ${MISSING_KEY_ADVICE}`);
  if (s.underOlderKeys > 0) lines.push(`${s.underOlderKeys} secret(s) are under an older key: run \`juniper vault rotate\`.`);
  else if (s.missing.length || s.keys.length === 0) {
    // Nothing more to say: either the missing key above, or a fresh install that has no key yet.
    if (!s.missing.length) lines.push('No secret is stored yet; `juniper serve` creates the key on first start.');
  } else if (older.length) lines.push(`Every secret is under ${s.keys[0]!.id}: the older key(s) ${older.join(', ')} can be removed from JUNIPER_SECRET_KEY.`);
  else lines.push(`Every secret is under ${s.keys[0]!.id}, the only key.`);
  return lines.join('\n') + '\n';
}

function missingKeyRefusal(s: Status): AppError {
  return new AppError('JUNIPER_ERR_VAULT_KEY', `${missingKeysText(s.missing)}, so rotating would lose them; nothing was changed. Juniper looked in ${s.keySource}. ${MISSING_KEY_ADVICE}`);
}

export function vaultCommand(withApp: WithApp, withInspectApp: WithApp): Command {
  const vault = new Command('vault').description('the keys that encrypt stored secrets: status, rotation, and forgetting secrets whose key is lost');

  vault
    .command('status')
    .description('which key each stored secret is encrypted with, and whether that key is configured')
    .option('--json', 'JSON output', false)
    .action(async (o: { json: boolean }) => {
      const s = await withInspectApp(status);
      process.stdout.write(o.json ? JSON.stringify(s, null, 2) + '\n' : statusText(s));
      if (s.missing.length) process.exitCode = 1;
    });

  vault
    .command('rotate')
    .description('re-encrypt every stored secret under the newest key (the first of JUNIPER_SECRET_KEY)')
    .action(async () => {
      const after = await withApp(async (app) => {
        const before = await status(app);
        if (before.missing.length) throw missingKeyRefusal(before);
        const { storedSecretSources } = await storedSecrets();
        await rotateSecrets(app.vault, storedSecretSources(app.database.db), (p) => {
          if (p.reencrypted + p.current + p.changedMeanwhile === p.total) {
            const extra = p.changedMeanwhile ? `, ${p.changedMeanwhile} changed meanwhile by a running worker (rewritten by it)` : '';
            process.stdout.write(`${p.label}: ${p.reencrypted} re-encrypted, ${p.current} already current${extra}\n`);
          }
        });
        return status(app);
      });
      process.stdout.write(statusText(after));
    });

  vault
    .command('forget')
    .description('delete the stored secrets encrypted with a key that is lost for good, so they can be entered again')
    .requiredOption('--key-id <id>', 'the key id `juniper vault status` names as not configured')
    .option('--yes', 'really delete them (without it, only list them)', false)
    .option('--all-keys-lost', 'delete even though no stored secret is readable here: every key the service had is lost, not just absent from this shell', false)
    .action(async (o: { keyId: string; yes: boolean; allKeysLost: boolean }) => {
      const { lines, warning } = await withInspectApp(async (app) => {
        const configured = app.vaultKeys.source.configured;
        if (configured.includes(o.keyId)) {
          throw new AppError('JUNIPER_ERR_VALIDATION', `Key ${o.keyId} is configured: its secrets can be read, so there is nothing to forget (rotate with \`juniper vault rotate\`).`);
        }
        const { keyIdOrUnknown, storedKeyIds, storedSecretSources } = await storedSecrets();
        const sources = storedSecretSources(app.database.db);
        // No key here, or one that reads none of the stored secrets, is far more often a shell without the
        // service's JUNIPER_SECRET_KEY than a key lost for good: deleting then would destroy secrets the service
        // reads every minute. The same test as the startup refusal.
        const wrongShell = checkVaultKeys({ configured, storedByKey: await storedKeyIds(sources) }).decision === 'refuse' ? wrongShellText(app, o.keyId) : null;
        if (wrongShell && o.yes && !o.allKeysLost) throw new AppError('JUNIPER_ERR_VAULT_KEY', `${wrongShell} Nothing was deleted.`);
        const out: string[] = [];
        for (const source of sources) {
          for (const secret of await source.list()) {
            if (keyIdOrUnknown(secret.cipher, secret.context) !== o.keyId) continue;
            const also = source.forgetsAlso ? await source.forgetsAlso(secret) : null;
            if (o.yes) await source.forget(secret);
            out.push(`${o.yes ? 'forgot' : 'would forget'}: ${secret.name}${also ? ` (${o.yes ? 'deleted' : 'deletes'} ${also})` : ''}`);
          }
        }
        return { lines: out, warning: o.yes ? null : wrongShell };
      });
      if (!lines.length) process.stdout.write(`No stored secret is encrypted with key ${o.keyId}.\n`);
      else {
        process.stdout.write(lines.join('\n') + '\n');
        if (warning) process.stdout.write(`${warning}\n`);
        process.stdout.write(o.yes ? 'Enter them again: the client secret in Settings → Outlook Credentials, passwords on their servers, Connect your Outlook account again; deleted webhooks must be created again.\n' : 'Nothing was changed. Run again with --yes to delete them.\n');
      }
    });

  return vault;
}

function wrongShellText(app: App, keyId: string): string {
  const looked = describeKeySource(app.vaultKeys.source);
  return (
    `No stored secret can be read with the keys this command found (it looked in ${looked}): the service may well have key ${keyId}, and its secrets are then not lost. ` +
    `Run this command with ${SECRET_KEY_ENV} exactly as the service gets it (the same user, data directory and environment): then only secrets under a key lost for good are listed. ` +
    'If every key the service ever had is lost for good, add --all-keys-lost.'
  );
}
