// Which waiting mails a change of the mail server policy may release. A mail refused by the port policy
// (port-policy.ts) or the address policy (host-policy.ts) waits, not fails: an admin's change of the parameter is
// what it waits for, so that change, on any path (`juniper params set|unset`, the parameters API, the System
// Parameters page: Settings.setParameter), makes those mails due at once instead of at their next recheck. The
// policy is read from the database at every connection (host-guard.ts), so the released mails see the change.
import type { FailureType } from '../outgoing/delivery-failure.js';
import { ALLOW_LIST_PARAMETER } from './host-policy.js';
import { PORTS_PARAMETER } from './port-policy.js';

const released: Readonly<Record<string, readonly FailureType[]>> = {
  [PORTS_PARAMETER]: ['port_not_allowed'],
  [ALLOW_LIST_PARAMETER]: ['host_not_allowed'],
};

/** The failure types of the waiting mails a change of `key` may release; empty for any other parameter. */
export function waitsReleasedBy(key: string): readonly FailureType[] {
  return Object.hasOwn(released, key) ? released[key]! : [];
}
