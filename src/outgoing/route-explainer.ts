// `juniper route` and GET /api/v1/route: the routing decision for a From address, with the reasons,
// computed exactly as the dispatcher computes it.
import type { Parameters } from '../settings/parameters.js';
import { routeMail, routeParametersFrom } from './routing.js';
import { toRoutable, type OutgoingServers } from './servers.js';

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

export async function explainRoute(
  input: { from: string; massMailing: boolean; forcedServerId: number | null },
  deps: { servers: OutgoingServers; parameters: Parameters },
): Promise<RouteExplanation> {
  // Archived servers are passed too (inactive), so the explanation can say they were not considered.
  const servers = (await deps.servers.list({ includeArchived: true })).map(toRoutable);
  const d = routeMail(input, servers, routeParametersFrom(await deps.parameters.snapshot()));
  return d.ok
    ? { ok: true, serverId: d.serverId, serverName: d.serverName, rule: d.rule, from: d.from, replyTo: d.replyTo, envelopeFrom: d.envelopeFrom, failureType: null, reason: null, warnings: d.warnings, explanation: d.explanation }
    : { ok: false, serverId: null, serverName: null, rule: d.rule, from: null, replyTo: null, envelopeFrom: null, failureType: d.failureType, reason: d.reason, warnings: [], explanation: d.explanation };
}
