// The settings page's model (DESIGN §11): Custom Email Servers, the Outlook app credentials and the
// mass-mailing server. The client secret is write-only: stored as vault ciphertext, never returned
// (hasClientSecret instead) and never audited. Mass mailing has no rows of its own here: it reads and
// writes the mass_mailing.* parameters, so `juniper params` and this page cannot disagree. updateAndCheck adds
// Microsoft's verdict on changed credentials (oauth/credentials-check.ts) after the save, never instead of it.
import { graphResourceFor, graphResources } from '../oauth/microsoft.js';
import { secretExpiryWarning, type SecretExpiryWarning } from '../oauth/secret-expiry.js';
import { checkOutlookCredentials, type CredentialsCheck } from '../oauth/credentials-check.js';
import { isDeepStrictEqual } from 'node:util';
import type { Kysely } from 'kysely';
import { z } from 'zod';
import type { Actor, AuditLog } from '../audit/audit-log.js';
import type { DB } from '../db/schema.js';
import { parseInput } from '../lib/validate.js';
import { AppError } from '../lib/errors.js';
import type { Vault } from '../vault/index.js';
import { assertOutlookUnused } from './outlook-in-use.js';
import { assertMassMailingChoice, assertMassMailingParameter, choiceOf, DEDICATED_PARAMETER, massMailingKeys, SERVER_ID_PARAMETER, withParameter } from './mass-mailing-choice.js';
import { got, normaliseParameter, toDomainName } from './parameter-rules.js';
import type { ParameterView, Parameters } from './parameters.js';
import type { FailureType } from '../outgoing/delivery-failure.js';
import { waitsReleasedBy } from '../mail-servers/policy-waits.js';

import { cloudHosts, clouds, type Cloud } from './clouds.js';

export { cloudHosts, clouds, type Cloud } from './clouds.js';

export const CLIENT_SECRET_CONTEXT = 'settings.outlook.client_secret';
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TENANT_KEYWORDS = new Set(['common', 'organizations', 'consumers']);
const DAY_MS = 86_400_000;

export interface SettingsView {
  customEmailServers: boolean;
  outlook: {
    enabled: boolean;
    clientId: string | null;
    hasClientSecret: boolean;
    clientSecretExpiresAt: string | null;
    /** Whole days from today (UTC) to the expiry date; negative once expired. */
    clientSecretDaysLeft: number | null;
    /** From 30 days before the expiry: how urgent, and what to do. */
    clientSecretWarning: SecretExpiryWarning | null;
    cloud: Cloud;
    tenant: string;
    /** The authority OAuth uses: from cloud and tenant, unless microsoft_outlook.endpoint overrides it. */
    authority: string;
    /** What to register in Azure; null until web.base.url is set. */
    redirectUri: string | null;
  };
  massMailing: { dedicatedServer: boolean; serverId: number | null };
}

/** For the OAuth flow only: holds the client secret in clear. */
export interface OutlookCredentials {
  enabled: boolean;
  clientId: string;
  clientSecret: string;
  authority: string;
  redirectUri: string | null;
  cloud: Cloud;
  /** Graph's resource for token requests and consent: per cloud, or the graph_endpoint's Graph host (DoD). */
  graphResource: string;
}

// null or an empty string clears a field, as an emptied form field does.
const clearable = <T extends string>(inner: z.ZodType<T, string>) =>
  inner
    .nullable()
    .transform((v) => (v === '' ? null : v))
    .optional();

const clientIdSchema = z.string().trim().superRefine((v, ctx) => {
  if (v !== '' && !GUID.test(v)) {
    ctx.addIssue({
      code: 'custom',
      message: `must be the Application (client) ID from the app's Overview page in the Azure portal; Azure application ids are GUIDs such as 1b4f9c5e-0000-4000-8000-123456789abc (the value given is not shown: it may be the secret pasted into the wrong field)`,
    });
  }
});

const clientSecretSchema = z
  .string()
  .trim()
  .max(1024, 'must be at most 1024 characters: paste the Value of the client secret, not its description')
  // eslint-disable-next-line no-control-regex -- control characters are exactly what this rejects
  .refine((v) => !/[\x00-\x1f\x7f]/.test(v), 'must not contain line breaks or control characters')
  // Azure shows a new secret as a Value (about 40 characters, such as "Abc8Q~…") beside its Secret ID, a GUID;
  // the seed warns to copy the Value, and the GUID is the mix-up it warns of. No secret Value is a GUID.
  .refine((v) => !GUID.test(v), 'looks like the Secret ID (a GUID), not the secret: paste the Value column of the client secret from Certificates & secrets in the Azure portal (Azure shows it only right after the secret is created; if it is gone, create a new client secret)');

const dateSchema = z.string().trim().superRefine((v, ctx) => {
  if (v !== '' && !isCalendarDate(v)) ctx.addIssue({ code: 'custom', message: `must be a date written YYYY-MM-DD, such as 2027-06-30 ${got(v)}` });
});

const tenantSchema = z
  .string()
  .trim()
  .transform((v, ctx) => {
    const lower = v.toLowerCase();
    if (TENANT_KEYWORDS.has(lower) || GUID.test(lower)) return lower;
    const domain = toDomainName(v);
    if (domain) return domain;
    ctx.addIssue({
      code: 'custom',
      message: `must be common, organizations, consumers, a tenant id (a GUID) or a verified domain such as contoso.onmicrosoft.com ${got(v)}`,
    });
    return z.NEVER;
  });

const serverIdRule = 'must be the id of an outgoing mail server (a positive whole number), or null';

const readOnly = (what: string) => z.never({ error: `is read-only: ${what}` }).optional();

export const settingsPatchSchema = z.strictObject({
  customEmailServers: z.boolean().optional(),
  outlook: z
    .strictObject({
      enabled: z.boolean().optional(),
      clientId: clearable(clientIdSchema.transform((v) => v.toLowerCase())),
      clientSecret: clearable(clientSecretSchema),
      clientSecretExpiresAt: clearable(dateSchema),
      cloud: z.enum(clouds, { error: `must be one of ${clouds.join(', ')}` }).optional(),
      tenant: tenantSchema.optional(),
      hasClientSecret: readOnly('set clientSecret, or clear it with an empty string'),
      clientSecretDaysLeft: readOnly('set clientSecretExpiresAt'),
      clientSecretWarning: readOnly('it follows clientSecretExpiresAt'),
      authority: readOnly('it follows cloud and tenant; the parameter microsoft_outlook.endpoint overrides it'),
      redirectUri: readOnly('it follows the parameter web.base.url'),
    })
    .optional(),
  massMailing: z
    .strictObject({
      dedicatedServer: z.boolean().optional(),
      serverId: z
        .number()
        .int(serverIdRule)
        .positive(serverIdRule)
        .max(2_147_483_647, serverIdRule)
        .nullable()
        .optional(),
    })
    .optional(),
});
export type SettingsPatch = z.input<typeof settingsPatchSchema>;

const READ_ONLY_OUTLOOK_FIELDS = ['hasClientSecret', 'authority', 'redirectUri'] as const;
const CLOCK_DERIVED_OUTLOOK_FIELDS = ['clientSecretDaysLeft', 'clientSecretWarning'] as const;

/**
 * GET, modify, PUT is what scripts do: a PUT body that repeats a read-only field of the current view unchanged
 * loses that field here; a changed one stays and is refused by the schema with its read-only message.
 */
export function withoutUnchangedReadOnly(body: unknown, current: SettingsView): unknown {
  if (!isPlainObject(body)) return body;
  // A previous PUT's answer sent back carries its credentials check: a verdict, never an input.
  const { credentialsCheck: _verdict, ...rest } = body;
  if (!isPlainObject(rest.outlook)) return rest;
  const outlook = { ...rest.outlook };
  for (const field of READ_ONLY_OUTLOOK_FIELDS) {
    if (field in outlook && isDeepStrictEqual(outlook[field], current.outlook[field])) delete outlook[field];
  }
  // The days left and the warning follow the clock: a body read before midnight and sent back after it repeats
  // yesterday's values. Whatever they say, nobody can mean to set them, so they are dropped, not refused.
  for (const field of CLOCK_DERIVED_OUTLOOK_FIELDS) delete outlook[field];
  return { ...rest, outlook };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The rows of the settings table (values JSON-encoded). */
const rowKeys = {
  customEmailServers: 'custom_email_servers',
  enabled: 'outlook.enabled',
  clientId: 'outlook.client_id',
  clientSecret: 'outlook.client_secret',
  clientSecretExpiresAt: 'outlook.client_secret_expires_at',
  cloud: 'outlook.cloud',
  tenant: 'outlook.tenant',
} as const;
type RowField = keyof typeof rowKeys;
/** The fields a token request depends on: changing one may fix an app-wide Outlook problem (app-status.ts). */
const APP_IDENTITY_FIELDS = new Set<RowField>(['clientId', 'clientSecret', 'cloud', 'tenant']);

interface Stored {
  customEmailServers: boolean;
  enabled: boolean;
  clientId: string | null;
  /** Vault ciphertext. */
  clientSecret: string | null;
  clientSecretExpiresAt: string | null;
  cloud: Cloud;
  tenant: string;
}

const storedSchema = z.object({
  customEmailServers: z.boolean().default(false),
  enabled: z.boolean().default(false),
  clientId: z.string().nullable().default(null),
  clientSecret: z.string().nullable().default(null),
  clientSecretExpiresAt: z.string().nullable().default(null),
  cloud: z.enum(clouds).default('global'),
  tenant: z.string().default('common'),
});

const auditNames: Record<RowField, string> = {
  customEmailServers: 'customEmailServers',
  enabled: 'outlook.enabled',
  clientId: 'outlook.clientId',
  clientSecret: 'outlook.clientSecret',
  clientSecretExpiresAt: 'outlook.clientSecretExpiresAt',
  cloud: 'outlook.cloud',
  tenant: 'outlook.tenant',
};

/** Called after the commit of a change (services.ts wires them to the queue). */
export interface SettingsHooks {
  /**
   * A save changed what Microsoft judges the app by (Client ID, secret, cloud, tenant): the mails waiting for an
   * app problem go out now, as a reconnect releases a server's.
   */
  onAppCredentialsChanged?: () => Promise<void>;
  /** The dedicated mass-mailing server or its switch changed (Settings or a mass_mailing.* parameter): the mass mailings waiting for it try again. */
  onMassMailingChanged?: () => Promise<void>;
  /**
   * A parameter of the mail server policy changed (mail.server.allowed_ports, mail.server.allowed_private_hosts):
   * the mails waiting for it (these failure types, policy-waits.ts) try again.
   */
  onServerPolicyChanged?: (waits: readonly FailureType[]) => Promise<void>;
}

export class Settings {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly vault: Pick<Vault, 'encrypt' | 'decrypt'>,
    private readonly parameters: Parameters,
    private readonly audit: AuditLog,
    private readonly now: () => number = Date.now,
    private readonly hooks: SettingsHooks = {},
  ) {}

  async get(): Promise<SettingsView> {
    return this.viewOf(await load(this.db));
  }

  async update(patch: SettingsPatch, actor: Actor): Promise<SettingsView> {
    await this.save(patch, actor);
    return this.get();
  }

  /**
   * update, then, when the save changed the Client ID, the client secret, the cloud or the tenant, the credentials
   * check (credentials-check.ts): one token request to Microsoft, whose verdict is advice for the admin. The save
   * is committed first and stands whatever the check says; `credentialsCheck` is absent when nothing it covers changed.
   */
  async updateAndCheck(patch: SettingsPatch, actor: Actor): Promise<{ settings: SettingsView; credentialsCheck?: CredentialsCheck }> {
    const appChanged = await this.save(patch, actor);
    const settings = await this.get();
    if (!appChanged) return { settings };
    return { settings, credentialsCheck: await this.checkCredentials(settings) };
  }

  private async checkCredentials(view: SettingsView): Promise<CredentialsCheck> {
    let credentials: OutlookCredentials | null;
    try {
      credentials = await this.outlookCredentials();
    } catch (err) {
      // The stored secret cannot be decrypted (its vault key is gone): AppError messages name no secret.
      const said = err instanceof AppError ? err.message : 'the stored client secret cannot be read';
      return { result: 'failed', code: err instanceof AppError ? err.code : 'unreadable_secret', message: `The credentials could not be checked: ${said}` };
    }
    return checkOutlookCredentials({
      clientId: view.outlook.clientId,
      clientSecret: credentials?.clientSecret ?? null,
      authority: view.outlook.authority,
      graphResource: credentials?.graphResource ?? graphResources[view.outlook.cloud],
    });
  }

  /** Writes the patch in one transaction; true when it changed what Microsoft judges the app by. */
  private async save(patch: SettingsPatch, actor: Actor): Promise<boolean> {
    const input = parseInput(settingsPatchSchema, patch, 'settings');
    const { appChanged, massMailingChanged } = await this.db.transaction().execute(async (trx) => {
      const params = this.parameters.withTransaction(trx);
      const old = await load(trx);
      const next: Stored = { ...old };
      const changes: RowField[] = [];
      const assign = <F extends RowField>(field: F, value: Stored[F] | undefined) => {
        if (value === undefined || value === old[field]) return;
        next[field] = value;
        changes.push(field);
      };
      assign('customEmailServers', input.customEmailServers);
      const o = input.outlook ?? {};
      assign('enabled', o.enabled);
      assign('clientId', o.clientId);
      assign('clientSecretExpiresAt', o.clientSecretExpiresAt);
      assign('cloud', o.cloud);
      assign('tenant', o.tenant);
      // A new secret always counts as a change: comparing would mean decrypting the old one for nothing.
      if (o.clientSecret !== undefined && (o.clientSecret !== null || old.clientSecret !== null)) {
        next.clientSecret = o.clientSecret === null ? null : this.vault.encrypt(o.clientSecret, CLIENT_SECRET_CONTEXT);
        changes.push('clientSecret');
      }
      for (const field of changes) await writeRow(trx, field, next[field], this.now());
      // Judged after the write: on PostgreSQL the row's lock then orders this against a save that makes a server
      // sign in with Outlook (a restore, a create, a switch: outlookInstalledLocked), which either waits and sees
      // Outlook uninstalled, or commits first and is among the servers found here.
      if (old.enabled && !next.enabled) await assertOutlookUnused(trx);
      const massMailing = await updateMassMailing(params, input.massMailing, actor, trx);
      const changed = [...changes.map((f) => auditNames[f]), ...massMailing];
      if (changed.length > 0) await this.audit.record(actor, 'settings.update', 'settings', { changed }, trx);
      return { appChanged: changes.some((f) => APP_IDENTITY_FIELDS.has(f)), massMailingChanged: massMailing.length > 0 };
    });
    // After the commit: the released mails must find the new credentials, or the new server.
    if (appChanged) await this.hooks.onAppCredentialsChanged?.();
    if (massMailingChanged) await this.hooks.onMassMailingChanged?.();
    return appChanged;
  }

  /**
   * A system parameter as an admin sets it (`juniper params set`, PUT /api/v1/parameters/:key, the System
   * Parameters page): the mass_mailing.* keys hold Settings' Email Marketing choice, so they are refused what
   * Settings refuses (mass-mailing-choice.ts), for the same reason, shaped as a parameter's refusal
   * (JUNIPER_ERR_INVALID_PARAMETER naming the key); the other keys go straight through.
   */
  async setParameter(key: string, value: string, actor: Actor): Promise<ParameterView> {
    if (!massMailingKeys.has(key)) {
      const set = await this.parameters.set(key, value, actor);
      await this.releaseWaitsFor(key);
      return set;
    }
    // The parameter's own rule first: "mass_mailing.mail_server_id must be …" for a value that is no id at all.
    const normalised = normaliseParameter(key, value);
    return this.changeMassMailingParameter(key, normalised, (params) => params.set(key, normalised, actor));
  }

  /** Removes a stored parameter as setParameter sets one: unsetting the mass-mailing server while it is on is refused. */
  async unsetParameter(key: string, actor: Actor): Promise<boolean> {
    if (!massMailingKeys.has(key)) {
      const removed = await this.parameters.unset(key, actor);
      if (removed) await this.releaseWaitsFor(key);
      return removed;
    }
    return this.changeMassMailingParameter(key, null, (params) => params.unset(key, actor));
  }

  /** After the commit of a change of `key`: the mails waiting for what it decides go now (policy-waits.ts). */
  private async releaseWaitsFor(key: string): Promise<void> {
    const waits = waitsReleasedBy(key);
    if (waits.length > 0) await this.hooks.onServerPolicyChanged?.(waits);
  }

  private async changeMassMailingParameter<T>(key: string, value: string | null, write: (params: Parameters) => Promise<T>): Promise<T> {
    // Judged in the transaction that writes it, as Settings judges its own changes.
    const { result, changed } = await this.db.transaction().execute(async (trx) => {
      const params = this.parameters.withTransaction(trx);
      const old = choiceOf(await params.snapshot());
      const next = withParameter(old, key, value);
      await assertMassMailingParameter(trx, key, old, next);
      return { result: await write(params), changed: !isDeepStrictEqual(old, next) };
    });
    if (changed) await this.hooks.onMassMailingChanged?.();
    return result;
  }

  /** Whether Microsoft Outlook is installed (Apps: outlook.enabled), without decrypting anything. */
  async outlookInstalled(): Promise<boolean> {
    return (await load(this.db)).enabled;
  }

  /** Microsoft Graph's base URL for sending: the parameter microsoft_outlook.graph_endpoint, else the cloud's Graph host. */
  async graphEndpoint(): Promise<string> {
    const [stored, p] = await Promise.all([load(this.db), this.parameters.snapshot()]);
    return p.graphEndpoint ?? graphResources[stored.cloud];
  }

  /** Decrypted Outlook app credentials for the OAuth flow; null until both client id and secret are set. */
  async outlookCredentials(): Promise<OutlookCredentials | null> {
    const stored = await load(this.db);
    if (!stored.clientId || !stored.clientSecret) return null;
    const view = await this.viewOf(stored);
    return {
      enabled: stored.enabled,
      clientId: stored.clientId,
      clientSecret: this.vault.decrypt(stored.clientSecret, CLIENT_SECRET_CONTEXT),
      authority: view.outlook.authority,
      redirectUri: view.outlook.redirectUri,
      cloud: view.outlook.cloud,
      graphResource: graphResourceFor(stored.cloud, (await this.parameters.snapshot()).graphEndpoint),
    };
  }

  private async viewOf(s: Stored): Promise<SettingsView> {
    const p = await this.parameters.snapshot();
    const daysLeft = s.clientSecretExpiresAt === null ? null : daysUntil(s.clientSecretExpiresAt, this.now());
    return {
      customEmailServers: s.customEmailServers,
      outlook: {
        enabled: s.enabled,
        clientId: s.clientId,
        hasClientSecret: s.clientSecret !== null,
        clientSecretExpiresAt: s.clientSecretExpiresAt,
        clientSecretDaysLeft: daysLeft,
        clientSecretWarning: secretExpiryWarning(daysLeft),
        cloud: s.cloud,
        tenant: s.tenant,
        authority: p.outlookEndpoint ?? authorityFor(s.cloud, s.tenant),
        redirectUri: p.webBaseUrl === null ? null : `${p.webBaseUrl}/microsoft_outlook/confirm`,
      },
      massMailing: { dedicatedServer: p.massMailingDedicatedServer, serverId: p.massMailingServerId },
    };
  }
}

/** `https://<cloud login host>/<tenant>/oauth2/v2.0/` */
export function authorityFor(cloud: Cloud, tenant: string): string {
  return `https://${cloudHosts[cloud]}/${tenant}/oauth2/v2.0/`;
}

/** Whole UTC days from `now` to the date; 0 on the day itself. */
export function daysUntil(date: string, now: number): number {
  const today = Math.floor(now / DAY_MS) * DAY_MS;
  return Math.round((Date.parse(`${date}T00:00:00Z`) - today) / DAY_MS);
}

function isCalendarDate(v: string): boolean {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(v)) return false;
  const t = Date.parse(`${v}T00:00:00Z`);
  // Date.parse rolls 2026-02-30 over to March; the round trip catches it.
  return !Number.isNaN(t) && new Date(t).toISOString().slice(0, 10) === v;
}

async function load(db: Kysely<DB>): Promise<Stored> {
  const rows = await db.selectFrom('settings').select(['key', 'value']).execute();
  const byKey = new Map(rows.map((r) => [r.key, r.value]));
  const raw: Record<string, unknown> = {};
  for (const [field, key] of Object.entries(rowKeys)) {
    const text = byKey.get(key);
    if (text === undefined) continue;
    try {
      raw[field] = JSON.parse(text) as unknown;
    } catch (cause) {
      throw new AppError('JUNIPER_ERR_DATABASE', `The setting ${key} in the settings table is not valid JSON; fix or delete that row.`, { cause });
    }
  }
  const parsed = storedSchema.safeParse(raw);
  if (!parsed.success) {
    const which = parsed.error.issues.map((i) => rowKeys[i.path[0] as RowField] ?? String(i.path[0])).join(', ');
    throw new AppError('JUNIPER_ERR_DATABASE', `The settings table holds a value of the wrong type for ${which}; fix or delete that row.`);
  }
  // No outlook.enabled row: never installed (databases that held a Client ID before Apps existed got the row
  // from migration 032).
  return parsed.data;
}

/**
 * Whether Microsoft Outlook is installed, for a write in `trx` that makes a server sign in with it (restoring an
 * archived Outlook server, creating one, switching one to Outlook). The no-op write takes the outlook.enabled
 * row's lock on PostgreSQL (SQLite's transactions hold the write lock already), so an uninstall in flight is
 * waited for and seen, and one that comes after finds the server (Settings.update). Callers take it before any
 * server row's lock, as the uninstall takes no server lock at all: one order, no deadlock.
 */
export async function outlookInstalledLocked(trx: Kysely<DB>): Promise<boolean> {
  await trx.updateTable('settings').set((eb) => ({ updated_at: eb.ref('updated_at') })).where('key', '=', rowKeys.enabled).execute();
  return (await load(trx)).enabled;
}

async function writeRow(db: Kysely<DB>, field: RowField, value: unknown, now: number): Promise<void> {
  const key = rowKeys[field];
  if (value === null) {
    await db.deleteFrom('settings').where('key', '=', key).execute();
    return;
  }
  const json = JSON.stringify(value);
  await db
    .insertInto('settings')
    .values({ key, value: json, updated_at: now })
    .onConflict((oc) => oc.column('key').doUpdateSet({ value: json, updated_at: now }))
    .execute();
}

/** Applies the massMailing part of a patch to its parameters; returns the changed field names. */
async function updateMassMailing(
  params: Parameters,
  patch: { dedicatedServer?: boolean | undefined; serverId?: number | null | undefined } | undefined,
  actor: Actor,
  db: Kysely<DB>,
): Promise<string[]> {
  if (!patch) return [];
  const old = choiceOf(await params.snapshot());
  const next = { dedicatedServer: patch.dedicatedServer ?? old.dedicatedServer, serverId: patch.serverId === undefined ? old.serverId : patch.serverId };
  await assertMassMailingChoice(db, old, next, 'massMailing.serverId');
  const changed: string[] = [];
  if (next.dedicatedServer !== old.dedicatedServer) {
    await params.set(DEDICATED_PARAMETER, String(next.dedicatedServer), actor);
    changed.push('massMailing.dedicatedServer');
  }
  if (next.serverId !== old.serverId) {
    if (next.serverId === null) await params.unset(SERVER_ID_PARAMETER, actor);
    else await params.set(SERVER_ID_PARAMETER, String(next.serverId), actor);
    changed.push('massMailing.serverId');
  }
  return changed;
}
