// A stored secret is only ever sent to the endpoint it was given for: the host, port and security it was
// entered with, and with certificates checked if they were then. Without this rule whoever may edit a server
// (a user owning a server whose password an admin typed in, who sees only hasPassword: true) could point it
// at a host of their own, press Test, and receive the password in AUTH PLAIN, or the Outlook account's
// access token in XOAUTH2 (security review, session 11). Both kinds' updates go through these two functions.
import { AppError } from '../lib/errors.js';

export interface Endpoint {
  host: string;
  port: number;
  security: string;
  allowSelfSigned: boolean;
}

export type EndpointPart = 'host' | 'port' | 'security' | 'allowSelfSigned';

/**
 * What of the endpoint an update moves; [] when a secret may go on as before. Host names are compared
 * without case (DNS ignores it); turning certificate checks back on moves nothing, since it only narrows
 * where the secret can go.
 */
export function endpointMoves(current: Endpoint, next: Endpoint): EndpointPart[] {
  const moves: EndpointPart[] = [];
  if (next.host.toLowerCase() !== current.host.toLowerCase()) moves.push('host');
  if (next.port !== current.port) moves.push('port');
  if (next.security !== current.security) moves.push('security');
  if (next.allowSelfSigned && !current.allowSelfSigned) moves.push('allowSelfSigned');
  return moves;
}

const and = (parts: string[]) => (parts.length < 2 ? parts.join('') : `${parts.slice(0, -1).join(', ')} and ${parts.at(-1)!}`);

/**
 * Refuses an update that would send the stored password to an endpoint it was not entered for. The error
 * names the password field, so the form shows it beside the password input; a new password in the same
 * update is the fix (its sender vouches for the new endpoint).
 */
export function assertPasswordMayMove(p: { auth: string; storedPassword: boolean; newPassword: boolean; moves: readonly EndpointPart[] }): void {
  if (p.auth !== 'password' || !p.storedPassword || p.newPassword || p.moves.length === 0) return;
  const changed = p.moves.filter((m) => m !== 'allowSelfSigned');
  const what = and([...(changed.length ? [`change the ${and(changed)}`] : []), ...(p.moves.includes('allowSelfSigned') ? ['allow self-signed certificates'] : [])]);
  const checks = p.moves.includes('allowSelfSigned') ? ', with the certificate check it was entered with' : '';
  throw new AppError('JUNIPER_ERR_VALIDATION', `Enter the password again to ${what}: a stored password is only sent to the host, port and security it was entered for${checks}.`, {
    details: { field: 'password', moves: [...p.moves] },
  });
}
