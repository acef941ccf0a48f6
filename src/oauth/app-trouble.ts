// What is wrong with the Outlook app as a whole, for the places that must not say "done" or "valid" while it
// is: Home, the server lists (page and CLI) and Settings. Two facts: the problem Microsoft reported (app-status.ts)
// and the expiry date the admin recorded for the client secret (secret-expiry.ts), which warns before Microsoft
// refuses anything.
import type { Settings } from '../settings/settings.js';
import type { AppProblem, OAuthAppStatus } from './app-status.js';
import type { SecretExpiryWarning } from './secret-expiry.js';

export interface OutlookAppTrouble {
  problem: AppProblem | null;
  secretWarning: SecretExpiryWarning | null;
}

export async function outlookAppTrouble(services: { oauthAppStatus: Pick<OAuthAppStatus, 'get'>; settings: Pick<Settings, 'get'> }): Promise<OutlookAppTrouble> {
  const [problem, view] = await Promise.all([services.oauthAppStatus.get(), services.settings.get()]);
  return { problem, secretWarning: view.outlook.hasClientSecret ? view.outlook.clientSecretWarning : null };
}

/** One sentence each, what failed and what to do: the Microsoft problem first, then the expiry warning. */
export function troubleSentences(t: OutlookAppTrouble): string[] {
  const out: string[] = [];
  if (t.problem) out.push(`The Outlook app's credentials were refused by Microsoft${t.problem.code ? ` (${t.problem.code})` : ''} since ${t.problem.since}; every Outlook server is affected: ${t.problem.message}`);
  if (t.secretWarning) out.push(t.secretWarning.message);
  return out;
}
