// What may be chosen as the dedicated mass-mailing server, judged alike on every path that changes it: Settings →
// Email Marketing and PUT /api/v1/settings (massMailing), and the two mass_mailing.* parameters (`juniper params
// set|unset`, PUT|DELETE /api/v1/parameters/:key, the System Parameters page). The parameters are where Settings
// keeps its choice, so a rule kept only by the form was one `params set` away from mass mailings left waiting.
// The reason is the same on every path; its shape is the path's (a settings field, or a parameter's key).
import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import { dedicatedServerState } from '../outgoing/mass-mailing.js';
import type { MailParameters } from './parameter-rules.js';

export interface MassMailingChoice {
  dedicatedServer: boolean;
  serverId: number | null;
}

export const DEDICATED_PARAMETER = 'mass_mailing.outgoing_mail_server';
export const SERVER_ID_PARAMETER = 'mass_mailing.mail_server_id';
export const massMailingKeys: ReadonlySet<string> = new Set([DEDICATED_PARAMETER, SERVER_ID_PARAMETER]);

export const choiceOf = (p: Pick<MailParameters, 'massMailingDedicatedServer' | 'massMailingServerId'>): MassMailingChoice => ({
  dedicatedServer: p.massMailingDedicatedServer,
  serverId: p.massMailingServerId,
});

/** The choice once one mass_mailing.* parameter holds `value` (normalised), or is unset (null: its default). */
export function withParameter(old: MassMailingChoice, key: string, value: string | null): MassMailingChoice {
  if (key === DEDICATED_PARAMETER) return { ...old, dedicatedServer: value === 'true' };
  if (key === SERVER_ID_PARAMETER) return { ...old, serverId: value === null ? null : Number(value) };
  return old;
}

/**
 * Why a change would leave mass mailings waiting, or null when it would not: turning the dedicated server on
 * without a server, or choosing one that is archived, inactive or missing; and any personal server. Only a change
 * is judged: the stored values sent back (a Settings form saving the client secret) are not refused for a server
 * archived meanwhile; Settings, doctor and the waiting mails say so instead. One reason whatever the path; each
 * path refuses it in its own shape (assertMassMailingChoice, assertMassMailingParameter).
 */
export async function massMailingRefusal(db: Kysely<DB>, old: MassMailingChoice, next: MassMailingChoice): Promise<string | null> {
  const { dedicatedServer, serverId } = next;
  const choosing = dedicatedServer && (!old.dedicatedServer || serverId !== old.serverId);
  if (choosing && serverId === null) {
    return `choose the outgoing mail server for mass mailings (${SERVER_ID_PARAMETER}) before turning dedicatedServer (${DEDICATED_PARAMETER}) on.`;
  }
  if (serverId === null || (serverId === old.serverId && !choosing)) return null;
  // A personal server's owner controls its host: mass mailings never go through one (routing refuses it too).
  const server = await db.selectFrom('outgoing_servers').select(['name', 'owner_user_id', 'active', 'archived_at']).where('id', '=', serverId).executeTakeFirst();
  const state = dedicatedServerState(server && { id: serverId, name: server.name, active: server.active === 1, archived: server.archived_at !== null });
  if (choosing && state !== 'usable') {
    const what = !server ? `no outgoing mail server has id ${serverId}` : `"${server.name}" (id ${serverId}) is ${state}: ${state === 'archived' ? 'restore it' : 'make it active'} first, or choose another server`;
    return `${what}; mass mailings would wait in the queue.`;
  }
  if (server && server.owner_user_id !== null) {
    return `"${server.name}" (id ${serverId}) is the personal server of user id ${server.owner_user_id}; mass mailings go only through a shared server.`;
  }
  return null;
}

/** Settings' refusal (Email Marketing, PUT /api/v1/settings): a validation error on the settings field `field`. */
export async function assertMassMailingChoice(db: Kysely<DB>, old: MassMailingChoice, next: MassMailingChoice, field: string): Promise<void> {
  const reason = await massMailingRefusal(db, old, next);
  if (reason) throw new AppError('JUNIPER_ERR_VALIDATION', `Invalid settings: massMailing.serverId: ${reason}`, { details: { field } });
}

/**
 * A mass_mailing.* parameter's refusal (`juniper params set|unset`, PUT|DELETE /api/v1/parameters/:key, the System
 * Parameters page), shaped as every other refusal of a parameter's value: JUNIPER_ERR_INVALID_PARAMETER naming the key.
 */
export async function assertMassMailingParameter(db: Kysely<DB>, key: string, old: MassMailingChoice, next: MassMailingChoice): Promise<void> {
  const reason = await massMailingRefusal(db, old, next);
  if (reason) throw new AppError('JUNIPER_ERR_INVALID_PARAMETER', `${key}: ${reason}`, { details: { key } });
}
