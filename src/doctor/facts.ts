// Gathers what `juniper doctor` judges: read-only questions to the services, plus one HTTP request to the
// identity provider for its clock. Nothing here writes.
import type { App } from '../app.js';
import { describeDatabase } from '../db/database.js';
import { pendingMigrations } from '../db/migrate.js';
import { incomingServerView } from '../incoming/servers.js';
import { outgoingServerView } from '../outgoing/servers.js';
import { defaultFromAddress } from '../settings/parameter-rules.js';
import { storedSecretSources } from '../stored-secrets.js';
import { ciphertextKeyId, describeKeySource } from '../vault/index.js';
import type { DoctorFacts, VaultFacts } from './diagnose.js';

const CLOCK_TIMEOUT_MS = 5_000;

/** Local clock minus the server's Date header, taken at the middle of the round trip. */
export async function clockSkew(url: string, now: () => number = Date.now): Promise<{ skewMs: number | null; error: string | null }> {
  const sent = now();
  try {
    const res = await fetch(url, { method: 'HEAD', redirect: 'manual', signal: AbortSignal.timeout(CLOCK_TIMEOUT_MS) });
    const received = now();
    const date = res.headers.get('date');
    if (!date || Number.isNaN(Date.parse(date))) return { skewMs: null, error: 'its answer has no Date header' };
    // The Date header has whole seconds: take the middle of its second.
    return { skewMs: Math.round((sent + received) / 2 - (Date.parse(date) + 500)), error: null };
  } catch (e) {
    return { skewMs: null, error: (e as Error).name === 'TimeoutError' ? `no answer within ${CLOCK_TIMEOUT_MS / 1000} s` : (e as Error).message };
  }
}

/** Facts for diagnose(); when migrations are pending only the database facts are read (the schema may lack columns). */
export async function doctorFacts(app: App): Promise<{ pending: string[]; facts: DoctorFacts | null }> {
  const database = describeDatabase(app.config.database);
  const pending = await pendingMigrations(app.database);
  if (pending.length) return { pending, facts: null };
  // Archived outgoing servers too: the dedicated mass-mailing server may be one (diagnose skips them otherwise).
  const { parameters, settings, outgoingServers, incomingServers, oauthAppStatus } = app.services;
  const [params, view, outgoing, incoming, appProblem] = await Promise.all([parameters.snapshot(), settings.get(), outgoingServers.list({ includeArchived: true }), incomingServers.list(), oauthAppStatus.get()]);
  const baseUrl = (await parameters.value('web.base.url')) ?? app.config.baseUrl ?? null;
  const { hostGuard } = outgoingServers;
  // The port policy as the connections apply it: the same list, the same test of who is held to it.
  const held = async (rows: readonly { id: number; active: number; archived_at: number | null; owner_user_id: number | null }[]) => {
    const ids: number[] = [];
    for (const r of rows) if (r.active === 1 && r.archived_at === null && (await hostGuard.applies(r.owner_user_id))) ids.push(r.id);
    return ids;
  };
  const portPolicy = { allowed: await hostGuard.allowedPorts(), held: { outgoing: await held(outgoing), incoming: await held(incoming) } };
  // A malformed authority (microsoft_outlook.endpoint) is refused when set, but an old row may hold one: say so
  // as a clock finding rather than let it pass for a database failure.
  const clockSource = URL.canParse(view.outlook.authority) ? new URL(view.outlook.authority).origin : view.outlook.authority;
  const clock = URL.canParse(view.outlook.authority) ? await clockSkew(clockSource) : { skewMs: null, error: 'the Outlook authority is not a URL: check microsoft_outlook.endpoint' };
  return {
    pending,
    facts: {
      database,
      pendingMigrations: pending,
      baseUrl,
      envBaseUrl: app.config.baseUrl ?? null,
      settings: view,
      notificationsAddress: defaultFromAddress(params),
      outgoing: outgoing.map((s) => outgoingServerView(s, appProblem)),
      incoming: incoming.map((s) => incomingServerView(s, appProblem)),
      appProblem,
      clockSkewMs: clock.skewMs,
      clockSource,
      clockError: clock.error,
      portPolicy,
      vault: await vaultFacts(app),
    },
  };
}

/** Tries every stored secret with the configured keys; keeps names and key ids, never a value. */
export async function vaultFacts(app: App): Promise<VaultFacts> {
  const { check, source, ephemeral } = app.vaultKeys;
  const unreadable: VaultFacts['unreadable'] = [];
  let stored = 0;
  for (const src of storedSecretSources(app.database.db)) {
    for (const s of await src.list()) {
      stored++;
      let keyId = '?';
      try {
        keyId = ciphertextKeyId(s.cipher, s.context);
        if (ephemeral || !source.configured.includes(keyId)) {
          unreadable.push({ label: src.label, name: s.name, keyId, reason: `key ${keyId} is not configured` });
          continue;
        }
        app.vault.decrypt(s.cipher, s.context);
      } catch (e) {
        unreadable.push({ label: src.label, name: s.name, keyId, reason: (e as Error).message });
      }
    }
  }
  return { keySource: describeKeySource(source), configured: source.configured, noKeyYet: ephemeral && check.decision === 'create', stored, unreadable };
}
