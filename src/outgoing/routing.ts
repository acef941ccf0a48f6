// Which outgoing server sends a mail, with which From, Reply-To and envelope sender: DESIGN §4, which
// users depend on exactly (seed: "single outgoing mail server" and "user-specific configuration").
// Pure: the dispatcher, `juniper route <from>` and the API all call this one function, so the
// explanation a person reads is the decision the queue takes.
import { domainOf, formatMailbox, localPartOf, normaliseAddress, parseMailbox, toHeaderLine } from '../lib/address.js';
import type { Mailbox } from '../lib/address.js';
import { bounceAddress, defaultFromAddress, got, toDomainName } from '../settings/parameter-rules.js';
import type { MailParameters } from '../settings/parameter-rules.js';
import { dedicatedServerProblem } from './mass-mailing.js';

export interface RoutableServer {
  id: number;
  name: string;
  fromFilter: string | null;
  priority: number;
  /** Usable: its Active setting is on and it is not archived. */
  active: boolean;
  /** Archived (as against merely inactive); unset counts an inactive server as archived. */
  archived?: boolean;
  /**
   * Set for a personal server (owner_user_id): its owner controls the host and sees all it carries, so it
   * carries only its owner's own mail. `address` is the owner's address, normalised; null when unknown.
   */
  owner?: { userId: number; address: string | null; isAdmin: boolean } | null;
}

export interface RouteInput {
  from: string;
  replyTo?: string | null;
  forcedServerId?: number | null;
  massMailing?: boolean;
  /** The user who enqueued the mail (outgoing_mails.created_by_user_id); null for none (scripts, the system). */
  createdByUserId?: number | null;
}

export interface RouteParameters {
  /** The notifications address, already computed (defaultFromAddress). */
  defaultFrom: string | null;
  bounceAddress: string | null;
  massMailingDedicated: boolean;
  massMailingServerId: number | null;
  /** Why there is no bounce address, naming the parameter that is missing (for the explanation only). */
  bounceMissing?: string;
}

export type RouteRule = 1 | 2 | 3 | 4 | 5 | 6 | 'forced' | 'mass_mailing';

export type RouteDecision =
  | {
      ok: true;
      serverId: number;
      serverName: string;
      rule: RouteRule;
      /** Header value to send. */
      from: string;
      replyTo: string | null;
      envelopeFrom: string;
      sendAs: 'from' | 'notifications';
      warnings: string[];
      /** Why each other server did not match, and why this one did. */
      explanation: string[];
    }
  | {
      ok: false;
      rule: 7;
      /** mass_mailing_server_unavailable: the mail waits (the dedicated server is a setting to put right). */
      failureType: 'no_server' | 'invalid_from' | 'forced_server_unavailable' | 'mass_mailing_server_unavailable';
      /** The server the mail names, when it exists (the mail waits for it). */
      serverId?: number;
      reason: string;
      explanation: string[];
    };

type Failure = Extract<RouteDecision, { ok: false }>;
type FilterMatch = 'address' | 'domain' | 'empty';

/** Lower-case canonical form of one filter part, in the same form normaliseAddress gives addresses. */
function normaliseFilterPart(part: string): string {
  const lower = part.trim().toLowerCase();
  // An IDN written in Unicode must still equal the xn-- domain normaliseAddress produces.
  if (lower.includes('@')) return normaliseAddress(lower) ?? lower;
  return toDomainName(lower) ?? lower;
}

// The dispatcher routes every mail of a batch against the same few filters; normalising their parts (IDN
// conversion included) once per filter text keeps routing cheap. Bounded, as filters are admin-edited text.
const parsedFilters = new Map<string, readonly string[]>();
const PARSED_FILTERS_MAX = 1000;

/** The parts of a From filter: comma-separated, trimmed, lower-cased, empties dropped. */
export function parseFromFilter(filter: string | null): string[] {
  if (filter === null) return [];
  let parts = parsedFilters.get(filter);
  if (parts === undefined) {
    parts = filter
      .split(',')
      .map((part) => part.trim())
      .filter((part) => part !== '')
      .map(normaliseFilterPart);
    if (parsedFilters.size >= PARSED_FILTERS_MAX) parsedFilters.clear();
    parsedFilters.set(filter, parts);
  }
  return [...parts];
}

/**
 * How a filter admits an address: a part with '@' equals the address, a part without equals its
 * domain (no subdomain or wildcard), an empty filter admits everything; null when it does not.
 */
export function filterMatches(parts: string[], address: string): FilterMatch | null {
  if (parts.length === 0) return 'empty';
  return matchNormalised(parts, normaliseAddress(address) ?? address.trim().toLowerCase());
}

/** filterMatches for an address already in normaliseAddress form (the hot path of routing). */
function matchNormalised(parts: string[], normal: string): FilterMatch | null {
  if (parts.length === 0) return 'empty';
  if (parts.includes(normal)) return 'address';
  const domain = domainOf(normal);
  return domain !== '' && parts.some((part) => !part.includes('@') && part === domain) ? 'domain' : null;
}

export function routeParametersFrom(p: MailParameters): RouteParameters {
  return {
    defaultFrom: defaultFromAddress(p),
    bounceAddress: bounceAddress(p),
    massMailingDedicated: p.massMailingDedicatedServer,
    massMailingServerId: p.massMailingServerId,
    ...(bounceAddress(p) === null
      ? { bounceMissing: `${[p.bounceAlias ? null : 'mail.bounce.alias', p.catchallDomain ? null : 'mail.catchall.domain'].filter((k) => k !== null).join(' and ')} not set` }
      : {}),
  };
}

interface Context {
  original: Mailbox;
  from: string;
  fromDomain: string;
  notifications: { mailbox: Mailbox; normal: string; domain: string } | null;
}

const archivedOf = (server: RoutableServer): boolean => server.archived ?? !server.active;
const label = (server: RoutableServer): string => `${server.name} (id ${server.id})`;
const filterText = (parts: string[]): string => (parts.length === 0 ? '(empty)' : parts.join(', '));
const byPriorityThenId = (a: RoutableServer, b: RoutableServer): number => a.priority - b.priority || a.id - b.id;

/** The best rule (1-5) a server satisfies on its own, or 6 when only "first server at all" applies. */
function bestRule(parts: string[], ctx: Context): 1 | 2 | 3 | 4 | 5 | 6 {
  if (parts.length === 0) return 5;
  const byFrom = matchNormalised(parts, ctx.from);
  if (byFrom === 'address') return 1;
  if (byFrom === 'domain') return 2;
  const byNotifications = ctx.notifications ? matchNormalised(parts, ctx.notifications.normal) : null;
  if (byNotifications === 'address') return 3;
  if (byNotifications === 'domain') return 4;
  return 6;
}

function ruleInWords(rule: 1 | 2 | 3 | 4 | 5 | 6, ctx: Context): string {
  switch (rule) {
    case 1:
      return `its filter lists the From address ${ctx.from}`;
    case 2:
      return `its filter lists the From domain ${ctx.fromDomain}`;
    case 3:
      return `its filter lists the notifications address ${ctx.notifications?.normal}`;
    case 4:
      return `its filter lists the notifications domain ${ctx.notifications?.domain}`;
    case 5:
      return 'its filter is empty, which admits every address';
    case 6:
      return 'no server lists the From or the notifications address and none has an empty filter, so the first server is used';
  }
}

function whyNot(server: RoutableServer, parts: string[], own: 1 | 2 | 3 | 4 | 5 | 6, ctx: Context, rule: number, winner: RoutableServer): string {
  if (own === 6) {
    const n = ctx.notifications;
    const also = !n || n.normal === ctx.from ? '' : n.domain === ctx.fromDomain ? `, nor the notifications address ${n.normal}` : `, nor the notifications address ${n.normal} or ${n.domain}`;
    return `${label(server)}: filter ${filterText(parts)} does not list ${ctx.from} or ${ctx.fromDomain}${also}`;
  }
  if (own === rule) {
    const first = server.owner && !winner.owner ? 'comes first: shared servers come before personal ones within a rule' : 'comes first by priority and id';
    return `${label(server)}: also matches rule ${own} (${ruleInWords(own, ctx)}), but ${label(winner)} ${first}`;
  }
  return `${label(server)}: matches only rule ${own} (${ruleInWords(own, ctx)}); rule ${rule} takes precedence`;
}

/**
 * The envelope sender. An empty filter admits every address (the filter definition above), so a
 * catch-all server also gets the bounce address; a server that lists other senders only does not,
 * because it would refuse to send as the bounce address.
 */
function envelope(server: RoutableServer, parts: string[], fromAddress: string, params: RouteParameters): { envelopeFrom: string; why: string } {
  const bounce = params.bounceAddress;
  if (bounce === null) return { envelopeFrom: fromAddress, why: `no bounce address is configured (${params.bounceMissing ?? 'mail.bounce.alias or mail.catchall.domain not set'})` };
  const match = filterMatches(parts, bounce);
  if (match === null) return { envelopeFrom: fromAddress, why: `the filter of ${label(server)} does not admit the bounce address ${bounce}` };
  const how = match === 'empty' ? 'its filter is empty' : match === 'address' ? 'its filter lists it' : 'its filter lists its domain';
  return { envelopeFrom: bounce, why: `the bounce address, as ${how}` };
}

function invalidFrom(input: RouteInput): Failure {
  const shown = toHeaderLine(input.from);
  const reason =
    shown === ''
      ? 'The mail has no From address: set one such as "John Doe" <john@example.com>.'
      : `The From ${got(shown)} is not one valid mailbox: use a single address such as "John Doe" <john@example.com>.`;
  return { ok: false, rule: 7, failureType: 'invalid_from', reason, explanation: [reason] };
}

function existingReplyTo(input: RouteInput): string | null {
  const value = input.replyTo ? toHeaderLine(input.replyTo) : '';
  return value === '' ? null : value;
}

const ownerLabel = (owner: NonNullable<RoutableServer['owner']>): string => `user id ${owner.userId}${owner.address ? ` (${owner.address})` : ''}`;

/**
 * Why a personal server may not carry this mail, or null when it may: the mail must be its owner's own (they
 * enqueued it) and have a From its owner may send as (their own address; an admin owner any). Mass mailings
 * never go through one.
 */
function personalRefusal(owner: NonNullable<RoutableServer['owner']>, input: RouteInput, ctx: Context): string | null {
  if (input.massMailing) return 'mass mailings never go through a personal server';
  if (input.createdByUserId == null || input.createdByUserId !== owner.userId) {
    const by = input.createdByUserId == null ? 'not by a user' : `by user id ${input.createdByUserId}`;
    return `a personal server carries only its owner's own mail (owner ${ownerLabel(owner)}), and this mail was sent ${by}`;
  }
  if (!owner.isAdmin && owner.address !== ctx.from) return `its owner ${ownerLabel(owner)} may send only as their own address, not as ${ctx.from}`;
  return null;
}

/** A mail that names its server (forced, or mass mail with a dedicated server) keeps its From. */
function routeToNamed(
  input: RouteInput,
  ctx: Context,
  all: readonly RoutableServer[],
  params: RouteParameters,
  id: number,
  rule: 'forced' | 'mass_mailing',
): RouteDecision {
  const why = rule === 'forced' ? `the mail is forced to server id ${id}` : `mass mailings go through the dedicated server id ${id} (mass_mailing.mail_server_id)`;
  const server = all.find((s) => s.id === id);
  if (rule === 'mass_mailing' && (!server || !server.active)) {
    const facts = server && { id, name: server.name, active: server.active, archived: archivedOf(server) };
    // Not usable, so there is a problem to name (dedicatedServerProblem is null only for a usable server).
    const reason = dedicatedServerProblem(id, facts)!;
    return { ok: false, rule: 7, failureType: 'mass_mailing_server_unavailable', ...(server ? { serverId: id } : {}), reason, explanation: [reason] };
  }
  if (!server || !server.active) {
    const state = server ? `${label(server)} is ${archivedOf(server) ? 'archived' : 'inactive'}` : `no outgoing mail server has id ${id}`;
    const reason = `${why[0]!.toUpperCase()}${why.slice(1)}, but ${state}: send the mail through another server or make server ${id} active again.`;
    return { ok: false, rule: 7, failureType: 'forced_server_unavailable', reason, explanation: [reason] };
  }
  const refusal = server.owner ? personalRefusal(server.owner, input, ctx) : null;
  if (refusal !== null) {
    const fix = rule === 'forced' ? 'send it without naming a server, or through a shared one' : 'set mass_mailing.mail_server_id to a shared (not personal) server';
    const reason = `${why[0]!.toUpperCase()}${why.slice(1)}, but ${label(server)} is a personal server and ${refusal}: ${fix}.`;
    return { ok: false, rule: 7, failureType: 'forced_server_unavailable', reason, explanation: [reason] };
  }
  const parts = parseFromFilter(server.fromFilter);
  const warnings: string[] = [];
  const n = ctx.notifications;
  // A dedicated mass-mailing server whose filter leaves out the From but admits the notifications address
  // sends as that address (Reply-To the original), as a shared server does by rules 3-4: sending as a From
  // the server was told it does not carry would only be refused by it. A forced server keeps the From.
  const rewrite = rule === 'mass_mailing' && filterMatches(parts, ctx.from) === null && n !== null && filterMatches(parts, n.normal) !== null;
  if (filterMatches(parts, ctx.from) === null && !rewrite) {
    warnings.push(`The From ${ctx.from} is not admitted by the filter of ${label(server)} (${filterText(parts)}): the server may refuse to send as it.`);
  }
  const sent: Mailbox = rewrite ? { name: senderName(ctx.original), address: n.mailbox.address } : ctx.original;
  const kept = existingReplyTo(input);
  const replyTo = kept ?? (rewrite ? formatMailbox(ctx.original, { alwaysQuote: true }) : null);
  const { envelopeFrom, why: envelopeWhy } = envelope(server, parts, sent.address, params);
  const explanation = [
    ...[...all].sort(byPriorityThenId).filter((s) => s !== server).map((s) => `${label(s)}: not considered, ${why}`),
    rewrite
      ? `${label(server)}: chosen because ${why}; its filter (${filterText(parts)}) does not list the From ${ctx.from} but lists the notifications address ${n.normal}: From rewritten to ${formatMailbox(sent, { alwaysQuote: true })}, Reply-To ${kept === null ? `set to the original From ${replyTo}` : `kept as ${kept}`}`
      : `${label(server)}: chosen because ${why}; the From is kept`,
    `Envelope sender ${envelopeFrom}: ${envelopeWhy}`,
  ];
  return {
    ok: true,
    serverId: server.id,
    serverName: server.name,
    rule,
    from: formatMailbox(sent, { alwaysQuote: true }),
    replyTo,
    envelopeFrom,
    sendAs: rewrite ? 'notifications' : 'from',
    warnings,
    explanation,
  };
}

function notificationsOf(params: RouteParameters): Context['notifications'] {
  const mailbox = params.defaultFrom === null ? undefined : parseMailbox(params.defaultFrom);
  const normal = params.defaultFrom === null ? undefined : normaliseAddress(params.defaultFrom);
  return mailbox && normal ? { mailbox, normal, domain: domainOf(normal) } : null;
}

/** The display name a rewritten From keeps: the original one, or its local part when it had none. */
function senderName(original: Mailbox): string {
  if (original.name !== '') return original.name;
  const local = localPartOf(original.address);
  return local.startsWith('"') ? local.slice(1, -1).replace(/\\(.)/g, '$1') : local;
}

export function routeMail(input: RouteInput, servers: readonly RoutableServer[], params: RouteParameters): RouteDecision {
  const original = parseMailbox(input.from);
  const from = normaliseAddress(input.from);
  if (!original || !from) return invalidFrom(input);
  const ctx: Context = { original, from, fromDomain: domainOf(from), notifications: notificationsOf(params) };

  if (input.forcedServerId != null) return routeToNamed(input, ctx, servers, params, input.forcedServerId, 'forced');
  const warnings: string[] = [];
  if (input.massMailing && params.massMailingDedicated) {
    if (params.massMailingServerId !== null) return routeToNamed(input, ctx, servers, params, params.massMailingServerId, 'mass_mailing');
    warnings.push('mass_mailing.outgoing_mail_server is on but mass_mailing.mail_server_id is not set: the mass mail is routed like any other mail.');
  }

  const active = servers.filter((s) => s.active).sort(byPriorityThenId);
  const archived = servers
    .filter((s) => !s.active)
    .sort(byPriorityThenId)
    .map((s) => `${label(s)}: ${archivedOf(s) ? 'archived' : 'inactive'}, not considered`);
  const all = active.map((server) => {
    const parts = parseFromFilter(server.fromFilter);
    const rule = bestRule(parts, ctx);
    // A personal server is never a fallback: only rules 1 and 2 (its filter lists the From or its domain).
    const refusal = !server.owner
      ? null
      : rule > 2
        ? `a personal server carries only mail whose From its filter lists (owner ${ownerLabel(server.owner)}); it is never a fallback`
        : personalRefusal(server.owner, input, ctx);
    return { server, parts, rule, refusal };
  });
  const candidates = all.filter((c) => c.refusal === null);
  const refused = all.filter((c) => c.refusal !== null).map((c) => `${label(c.server)}: personal server, not used: ${c.refusal}`);
  // Rules are tried in order and, within a rule, shared servers before personal ones (so no priority puts a
  // personal server ahead of a shared one), then by (priority, id); every shared server qualifies for rule 6.
  const rank = (c: (typeof candidates)[number]): number => c.rule * 2 + (c.server.owner ? 1 : 0);
  const winner = candidates.reduce<(typeof candidates)[number] | undefined>((best, c) => (best === undefined || rank(c) < rank(best) ? c : best), undefined);
  if (!winner) {
    const reason =
      refused.length > 0
        ? 'No outgoing mail server may carry this mail: only personal servers are active, and none may carry it. Create a shared outgoing mail server in the admin UI.'
        : 'No outgoing mail server is configured (or all are archived): create one in the admin UI under outgoing mail servers, or make an archived one active again.';
    return { ok: false, rule: 7, failureType: 'no_server', reason, explanation: [...refused, ...archived, reason] };
  }

  const { server, parts, rule } = winner;
  const n = ctx.notifications;
  // Rules 1 and 2 send as the From; 3 and 4 exist only with a notifications address; 5 and 6 use it when set.
  const asNotifications = rule >= 3 && n !== null;
  const rewrite = asNotifications && n.normal !== from;
  if (rule === 6) {
    warnings.push(
      `No outgoing mail server's filter admits ${from}${n && n.normal !== from ? ` or the notifications address ${n.normal}` : ''} and none has an empty filter: ` +
        `sending through the first server, ${label(server)}, which may refuse the sender. Add the address or its domain to a server's From filter.`,
    );
  }

  const sent: Mailbox = rewrite ? { name: senderName(original), address: n.mailbox.address } : original;
  const headerFrom = formatMailbox(sent, { alwaysQuote: true });
  const kept = existingReplyTo(input);
  const replyTo = kept ?? (rewrite ? formatMailbox(original, { alwaysQuote: true }) : null);
  const { envelopeFrom, why: envelopeWhy } = envelope(server, parts, sent.address, params);

  const sendingAs = asNotifications ? `sending as the notifications address ${n.normal}` : `sending as the From ${from}`;
  const explanation = [
    ...candidates.map((c) => (c === winner ? `${label(server)}: chosen by rule ${rule}: ${ruleInWords(rule, ctx)}; ${sendingAs}` : whyNot(c.server, c.parts, c.rule, ctx, rule, server))),
    ...refused,
    ...archived,
    rewrite
      ? `From rewritten to ${headerFrom}; Reply-To ${kept === null ? `set to the original From ${replyTo}` : `kept as ${kept}`}`
      : `From kept: ${headerFrom}${asNotifications ? ' (already the notifications address)' : ''}`,
    `Envelope sender ${envelopeFrom}: ${envelopeWhy}`,
  ];
  return {
    ok: true,
    serverId: server.id,
    serverName: server.name,
    rule,
    from: headerFrom,
    replyTo,
    envelopeFrom,
    sendAs: asNotifications ? 'notifications' : 'from',
    warnings,
    explanation,
  };
}
