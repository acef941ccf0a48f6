// The sender and recipient Test Connection uses: an address the server should accept for this server's
// From filter, so a refusal at MAIL FROM means "this server will refuse your mail" rather than "bad probe".
import { toEmailAddress } from '../settings/parameter-rules.js';
import { filterMatches, parseFromFilter } from './routing.js';

export function probeAddresses(server: { from_filter: string | null; username: string | null }, notificationsAddress: string | null): { from: string; to: string } {
  const parts = parseFromFilter(server.from_filter);
  const username = server.username ? toEmailAddress(server.username) : undefined;
  const candidates = [
    parts.find((p) => p.includes('@')),
    notificationsAddress && filterMatches(parts, notificationsAddress) ? notificationsAddress : undefined,
    username && filterMatches(parts, username) ? username : undefined,
    parts.length ? `noreply@${parts[0]}` : undefined,
    username,
    notificationsAddress ?? undefined,
  ];
  const from = candidates.find((c): c is string => !!c) ?? 'noreply@example.com';
  // Sending to oneself is accepted by every server that accepts the sender, and nothing is delivered anyway.
  return { from, to: from };
}
