// The server views the REST API and the CLI return (`servers list/show --json` promise "the same objects the
// REST API returns"): one path that reads the app-wide Outlook problem with the rows, so neither can show
// "token valid" without the appProblem the other shows.
import type { OAuthAppStatus } from '../oauth/app-status.js';
import type { CommonInput, KindName, MailServers, ServerRows } from './mail-servers.js';

export async function serverViews<K extends KindName, C extends CommonInput, P extends Partial<CommonInput>, V>(
  servers: MailServers<K, C, P, V>,
  appStatus: Pick<OAuthAppStatus, 'get'>,
  rows: readonly ServerRows[K][],
): Promise<V[]> {
  const problem = await appStatus.get();
  return rows.map((r) => servers.view(r, problem));
}

export async function serverViewOf<K extends KindName, C extends CommonInput, P extends Partial<CommonInput>, V>(
  servers: MailServers<K, C, P, V>,
  appStatus: Pick<OAuthAppStatus, 'get'>,
  row: ServerRows[K],
): Promise<V> {
  return (await serverViews(servers, appStatus, [row]))[0]!;
}
