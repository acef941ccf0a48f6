// Juniper's modules as the Apps page lists them. The Outlook procedure starts "navigate to the Apps module …
// remove the Apps filter … type in Outlook … install the module called Microsoft Outlook", so the page must
// hold exactly that; but it lists only what really exists: the gateway itself (always there) and the
// Microsoft Outlook integration, whose installed state is the setting outlook.enabled (one source of truth:
// the settings API, the CLI's --outlook and Install/Uninstall all change that one row).
import type { Actor } from '../audit/audit-log.js';
import { AppError } from '../lib/errors.js';
import type { Settings } from './settings.js';

export type ModuleName = 'juniper' | 'microsoft_outlook';

export interface ModuleInfo {
  name: ModuleName;
  title: string;
  summary: string;
  /** Shown under the "Apps" filter; technical modules (Microsoft Outlook) only without it, as in the procedure. */
  application: boolean;
  /** False for the gateway itself: it cannot be uninstalled from its own page. */
  switchable: boolean;
}

export const modules: readonly ModuleInfo[] = [
  {
    name: 'juniper',
    title: 'Mail Gateway',
    summary: 'Outgoing Email Servers, the Outbox, Incoming Mail Servers and the Inbox. Juniper itself: always installed.',
    application: true,
    switchable: false,
  },
  {
    name: 'microsoft_outlook',
    title: 'Microsoft Outlook',
    summary: 'Outlook Credentials in Settings and "Connect your Outlook account" on mail servers: Microsoft 365 through Azure OAuth.',
    application: false,
    switchable: true,
  },
];

export interface ModuleQuery {
  /** The "Apps" facet: applications only. */
  appsOnly: boolean;
  search: string;
}

/** The modules the search bar shows: every word must appear in the title, summary or technical name. */
export function matchModules(all: readonly ModuleInfo[], query: ModuleQuery): ModuleInfo[] {
  const words = query.search.toLowerCase().split(/\s+/).filter((w) => w !== '');
  return all.filter((m) => {
    if (query.appsOnly && !m.application) return false;
    const haystack = `${m.title} ${m.summary} ${m.name}`.toLowerCase();
    return words.every((w) => haystack.includes(w));
  });
}

export interface ModuleDeps {
  settings: Pick<Settings, 'get' | 'update'>;
}

export async function installedModules(deps: ModuleDeps): Promise<Set<ModuleName>> {
  const view = await deps.settings.get();
  return new Set<ModuleName>(view.outlook.enabled ? ['juniper', 'microsoft_outlook'] : ['juniper']);
}

function switchable(name: string): ModuleInfo {
  const m = modules.find((x) => x.name === name);
  if (!m) throw new AppError('JUNIPER_ERR_NOT_FOUND', `There is no module "${name}".`);
  if (!m.switchable) throw new AppError('JUNIPER_ERR_VALIDATION', `${m.title} is Juniper itself: it is always installed.`);
  return m;
}

export async function installModule(deps: ModuleDeps, name: string, actor: Actor): Promise<ModuleInfo> {
  const m = switchable(name);
  await deps.settings.update({ outlook: { enabled: true } }, actor);
  return m;
}

/** Refused while a server uses Outlook: the settings model judges that, for every way of uninstalling (outlook-in-use.ts). */
export async function uninstallModule(deps: ModuleDeps, name: string, actor: Actor): Promise<ModuleInfo> {
  const m = switchable(name);
  await deps.settings.update({ outlook: { enabled: false } }, actor);
  return m;
}
