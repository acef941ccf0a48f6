// Key rotation: every stored secret re-encrypted under the newest vault key, so an old key can be removed
// from JUNIPER_SECRET_KEY. The vault knows no tables: each owner of encrypted values describes them as a
// SecretSource, and this module only walks them. A row is rewritten only if it still holds the ciphertext
// that was read (compare-and-set), so a token refreshed meanwhile by a running worker is never overwritten.
import { ciphertextKeyId } from './secret-box.js';
import type { Vault } from './index.js';

/** One stored secret: where it is, its ciphertext and the context it was encrypted with. */
export interface StoredSecret {
  id: number | string;
  cipher: string;
  context: string;
  /** What the secret is, for people (doctor, `vault forget`): e.g. `password of outgoing server "Office" (id 3)`. Never the value. */
  name: string;
}

export interface SecretSource {
  /** Shown in progress and status lines, e.g. `outgoing_servers.password_enc`. */
  readonly label: string;
  list(): Promise<StoredSecret[]>;
  /** Replaces `from` by `to` where it still stands; false when the value changed meanwhile. */
  replace(secret: StoredSecret, to: string): Promise<boolean>;
  /** Removes a secret no key can read any more (`juniper vault forget`), so it can be entered again. */
  forget(secret: StoredSecret): Promise<void>;
  /** What else `forget` deletes with the secret, for the list shown first: e.g. `webhook id 4 and its 12 deliveries`. */
  forgetsAlso?(secret: StoredSecret): Promise<string | null>;
}

export interface RotationProgress {
  label: string;
  total: number;
  reencrypted: number;
  /** Already under the newest key. */
  current: number;
  /** Changed by someone else between read and write (already rewritten by its owner). */
  changedMeanwhile: number;
}

/** How many secrets each key id holds, per source: what `juniper vault status` prints. */
export async function secretKeyCensus(sources: readonly SecretSource[]): Promise<{ label: string; byKey: Record<string, number> }[]> {
  const out: { label: string; byKey: Record<string, number> }[] = [];
  for (const source of sources) {
    const byKey: Record<string, number> = {};
    for (const s of await source.list()) {
      const kid = ciphertextKeyId(s.cipher, s.context);
      byKey[kid] = (byKey[kid] ?? 0) + 1;
    }
    out.push({ label: source.label, byKey });
  }
  return out;
}

/**
 * Re-encrypts every secret under the vault's newest key. A value no configured key can decrypt stops the
 * run with the vault's own error (which names the key id it needs): rotating must never drop a secret.
 */
export async function rotateSecrets(vault: Vault, sources: readonly SecretSource[], onProgress: (p: RotationProgress) => void = () => {}): Promise<RotationProgress[]> {
  const results: RotationProgress[] = [];
  for (const source of sources) {
    const secrets = await source.list();
    const p: RotationProgress = { label: source.label, total: secrets.length, reencrypted: 0, current: 0, changedMeanwhile: 0 };
    for (const secret of secrets) {
      const next = vault.reencrypt(secret.cipher, secret.context);
      if (next === secret.cipher) p.current++;
      else if (await source.replace(secret, next)) p.reencrypted++;
      else p.changedMeanwhile++;
      onProgress({ ...p });
    }
    onProgress({ ...p });
    results.push(p);
  }
  return results;
}
