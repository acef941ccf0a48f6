// Microsoft Outlook stays installed while a mail server signs in with it. Uninstalled (outlook.enabled false),
// Connect your Outlook account is refused, so such a server could never be reconnected and its mail would stop
// at the first token Microsoft no longer refreshes, with no word on the server itself. Three ways lead there and
// all are refused: uninstalling while a listed server uses Outlook (Settings.update, the one place that changes
// outlook.enabled: Apps, the settings API and page, and `juniper settings set --outlook off` alike); restoring an
// archived Outlook server while Outlook is uninstalled (MailServers.restore); and creating an Outlook server, or
// switching one to Outlook, while it is uninstalled (MailServers.create and update: the pages, the API and
// `juniper servers` alike). Archived servers do not hold the uninstall up: archiving is one of the two ways out
// the refusal offers, and an archived server is never used; restoring one is the moment it would be stranded, so
// that is where it is refused. Each check runs in the transaction of its write, ordered by the outlook.enabled
// row's lock (outlookInstalledLocked in settings.ts), so an uninstall and a save that race cannot both succeed.
import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.js';
import { AppError } from '../lib/errors.js';

/** The settings field that is refused; the API error body names it in `field`. */
export const OUTLOOK_ENABLED_FIELD = 'outlook.enabled';

/** The refusal to uninstall, naming the servers that use Outlook (at most three, then how many more); null when none does. */
export function uninstallRefusal(outlookServers: readonly string[]): string | null {
  if (outlookServers.length === 0) return null;
  const names = outlookServers.slice(0, 3).map((n) => `"${n}"`).join(', ');
  const more = outlookServers.length > 3 ? ` and ${outlookServers.length - 3} more` : '';
  return `Microsoft Outlook is still used by ${outlookServers.length === 1 ? 'the server' : 'the servers'} ${names}${more}: switch them off Outlook or archive them, then uninstall.`;
}

/** Names of the non-archived outgoing, then incoming, servers that sign in with Outlook, as their lists order them. */
export async function outlookServerNames(db: Kysely<DB>): Promise<string[]> {
  const names = async (table: 'outgoing_servers' | 'incoming_servers') =>
    (await db.selectFrom(table).select('name').where('auth', '=', 'outlook').where('archived_at', 'is', null).orderBy('priority').orderBy('id').execute()).map((r) => r.name);
  return [...(await names('outgoing_servers')), ...(await names('incoming_servers'))];
}

/** Throws the uninstall refusal when a non-archived server uses Outlook. */
export async function assertOutlookUnused(db: Kysely<DB>): Promise<void> {
  const refusal = uninstallRefusal(await outlookServerNames(db));
  if (refusal) throw new AppError('JUNIPER_ERR_OUTLOOK_IN_USE', refusal, { details: { field: OUTLOOK_ENABLED_FIELD } });
}

/** The refusal to restore an archived Outlook server while Microsoft Outlook is uninstalled. */
export function restoreRefusal(noun: string, name: string): AppError {
  return new AppError(
    'JUNIPER_ERR_SETUP_INCOMPLETE',
    `The ${noun} "${name}" signs in with Microsoft Outlook, which is not installed: install Microsoft Outlook in Apps (remove the Apps filter, search Outlook) first, or switch the server to another sign-in, then restore it.`,
  );
}

/** The field of a server's create or patch body that is refused (the sign-in: Outlook). */
export const SERVER_AUTH_FIELD = 'auth';

/** The refusal to create a server that signs in with Outlook, or switch one to it, while Microsoft Outlook is uninstalled. */
export function outlookUninstalledRefusal(noun: string, name: string): AppError {
  return new AppError(
    'JUNIPER_ERR_SETUP_INCOMPLETE',
    `Microsoft Outlook is not installed, so the ${noun} "${name}" cannot sign in with it: install Microsoft Outlook in Apps first (an admin: remove the Apps filter, search Outlook, Install), or choose another sign-in.`,
    { details: { field: SERVER_AUTH_FIELD } },
  );
}
