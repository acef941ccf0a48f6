// `juniper route` and GET /api/v1/route: the routing decision for a From address, with the reasons,
// computed exactly as the dispatcher computes it.
import { normaliseAddress } from '../lib/address.js';
import type { Parameters } from '../settings/parameters.js';
import { routeMail, routeParametersFrom } from './routing.js';
import type { OutgoingServers } from './servers.js';

export interface RouteExplanation {
  ok: boolean;
  serverId: number | null;
  serverName: string | null;
  rule: number | string;
  from: string | null;
  replyTo: string | null;
  envelopeFrom: string | null;
  failureType: string | null;
  reason: string | null;
  warnings: string[];
  explanation: string[];
}

/**
 * `createdByUserId` is who would send the mail (personal servers carry only their owner's own mail). When the
 * caller does not say, the mail is explained as sent by the user whose address the From is, as it would be
 * when that user sends it; the explanation says so.
 */
export async function explainRoute(
  input: { from: string; massMailing: boolean; forcedServerId: number | null; createdByUserId?: number | null },
  deps: { servers: OutgoingServers; parameters: Parameters },
): Promise<RouteExplanation> {
  // Archived servers are passed too (inactive), so the explanation can say they were not considered.
  const servers = await deps.servers.routable();
  const from = normaliseAddress(input.from);
  let createdByUserId = input.createdByUserId;
  let assumed: string | null = null;
  if (createdByUserId === undefined) {
    createdByUserId = from ? await deps.servers.userIdByAddress(from) : null;
    assumed = createdByUserId === null ? 'Explained as a mail sent by no user (a script or the system).' : `Explained as a mail sent by user id ${createdByUserId}, whose address is the From.`;
  }
  const d = routeMail({ ...input, createdByUserId }, servers, routeParametersFrom(await deps.parameters.snapshot()));
  const explanation = assumed && servers.some((s) => s.owner) ? [assumed, ...d.explanation] : d.explanation;
  return d.ok
    ? { ok: true, serverId: d.serverId, serverName: d.serverName, rule: d.rule, from: d.from, replyTo: d.replyTo, envelopeFrom: d.envelopeFrom, failureType: null, reason: null, warnings: d.warnings, explanation }
    : { ok: false, serverId: null, serverName: null, rule: d.rule, from: null, replyTo: null, envelopeFrom: null, failureType: d.failureType, reason: d.reason, warnings: [], explanation };
}
