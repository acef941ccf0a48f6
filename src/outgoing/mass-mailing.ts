// The dedicated mass-mailing server (Settings → Email Marketing): whether mass mailings can go through it and, when
// they cannot, the one explanation everybody gives. Routing (so the dispatcher and the Route checker alike),
// Settings, `juniper doctor` and the archive refusal all word it here, so an admin reads one cause, not two.
// Pure.

/** What is known of the server mass_mailing.mail_server_id names; undefined when no server has that id. */
export interface DedicatedServerFacts {
  id: number;
  name: string;
  /** The server's own Active setting (as the admin set it), apart from archiving. */
  active: boolean;
  archived: boolean;
}

export type DedicatedServerState = 'usable' | 'archived' | 'inactive' | 'missing';

export function dedicatedServerState(server: DedicatedServerFacts | undefined): DedicatedServerState {
  if (!server) return 'missing';
  if (server.archived) return 'archived';
  return server.active ? 'usable' : 'inactive';
}

const SETTINGS = 'choose another server in Settings → Email Marketing (or turn "Dedicated server for mass mailings" off there)';

/**
 * Why mass mailings cannot go through the dedicated server `id`, naming it and what to do; null when they can.
 * The mails wait rather than fail (the dispatcher holds them, no attempt counted): the cause is a setting an
 * admin puts right, not the mail.
 */
export function dedicatedServerProblem(id: number, server: DedicatedServerFacts | undefined): string | null {
  const state = dedicatedServerState(server);
  if (state === 'usable') return null;
  const named = server ? `"${server.name}" (id ${id})` : `id ${id} (mass_mailing.mail_server_id)`;
  const why =
    state === 'missing'
      ? `but no outgoing mail server has id ${id}: ${SETTINGS}`
      : state === 'archived'
        ? `but it is archived: restore it (Outgoing Email Servers → Show archived servers → Restore), or ${SETTINGS}`
        : `but it is inactive: make it active again (tick Active on the server and save), or ${SETTINGS}`;
  return `Mass mailings go through the dedicated server ${named}, ${why}. Until then mass mailings wait in the queue.`;
}

/** Why archiving `server` is refused while it is the dedicated mass-mailing server (the API, CLI and pages alike). */
export function archiveRefusal(server: { id: number; name: string }): string {
  return (
    `"${server.name}" (id ${server.id}) is the dedicated server for mass mailings, so it is not archived: mass mailings would have no server ` +
    `and wait in the queue. First ${SETTINGS}, then archive it.`
  );
}
