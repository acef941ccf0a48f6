// GET /microsoft_outlook/confirm: where Microsoft sends the browser back. Needs a signed-in user (a
// signed-out browser goes to the sign-in page and comes back here with the same query). Success lands on
// the server's form, which shows "Outlook Token Valid"; every problem is a page saying what to do.
import type { FastifyPluginAsync } from 'fastify';
import type { Services } from '../services.js';
import { AppError, errorCatalogue, isAppError } from '../lib/errors.js';
import { serverPath, type ConfirmQuery } from '../oauth/outlook-connect.js';
import type { ServerKind } from '../oauth/token-provider.js';
import { contextOf, errorPage } from '../ui/error-page.js';

async function serverName(services: Pick<Services, 'outgoingServers' | 'incomingServers'>, kind: ServerKind, id: number): Promise<string | null> {
  try {
    return (kind === 'outgoing' ? await services.outgoingServers.get(id) : await services.incomingServers.get(id)).name;
  } catch {
    return null;
  }
}

export function oauthCallbackRoutes(services: Pick<Services, 'outlookConnect' | 'outgoingServers' | 'incomingServers'>): FastifyPluginAsync {
  return async (app) => {
    app.get<{ Querystring: ConfirmQuery }>('/microsoft_outlook/confirm', { config: { access: 'user' } }, async (request, reply) => {
      const principal = request.principal!;
      try {
        const result = await services.outlookConnect.confirm(request.query, principal);
        const query = result.accountMismatch ? '?connected=1&mismatch=1' : '?connected=1';
        return await reply.redirect(`${serverPath(result.kind, result.serverId)}${query}`, 303);
      } catch (e) {
        // A person's browser is reading: every failure (Microsoft's refusals such as a wrong client secret,
        // a bad state, Juniper's own faults) is a page naming the server and what to do, never raw JSON.
        const err = isAppError(e) ? e : new AppError('JUNIPER_ERR_INTERNAL', errorCatalogue.JUNIPER_ERR_INTERNAL.message, { cause: e });
        if (err.status >= 500) request.log.warn({ err: e, code: err.code, status: err.status }, err.message);
        const kind = err.details?.kind as ServerKind | undefined;
        const serverId = err.details?.serverId as number | undefined;
        const back = kind && serverId ? serverPath(kind, serverId) : '/outgoing-servers';
        const name = kind && serverId ? await serverName(services, kind, serverId) : null;
        const heading = err.code === 'JUNIPER_ERR_OAUTH_STATE' ? 'This Microsoft sign-in cannot be used' : `Outlook account not connected${name ? ` for ${name}` : ''}`;
        return reply
          .status(err.status)
          .header('content-type', 'text/html; charset=utf-8')
          .header('cache-control', 'no-store')
          .send(errorPage(err, contextOf(request), { heading, back: { href: back, label: `Back to ${name ?? 'the mail server'}` } }));
      }
    });
  };
}
