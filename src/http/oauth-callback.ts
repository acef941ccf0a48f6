// GET /microsoft_outlook/confirm: where Microsoft sends the browser back. Needs a signed-in user (a
// signed-out browser goes to the sign-in page and comes back here with the same query). Success lands on
// the server's form, which shows "Outlook Token Valid"; every problem is a page saying what to do.
import type { FastifyPluginAsync } from 'fastify';
import type { Services } from '../services.js';
import { isAppError } from '../lib/errors.js';
import { serverPath, type ConfirmQuery } from '../oauth/outlook-connect.js';
import type { ServerKind } from '../oauth/token-provider.js';
import { html } from '../ui/html.js';
import { page } from '../ui/layout.js';

export function oauthCallbackRoutes(services: Pick<Services, 'outlookConnect'>): FastifyPluginAsync {
  return async (app) => {
    app.get<{ Querystring: ConfirmQuery }>('/microsoft_outlook/confirm', { config: { access: 'user' } }, async (request, reply) => {
      const principal = request.principal!;
      try {
        const result = await services.outlookConnect.confirm(request.query, principal);
        const query = result.accountMismatch ? '?connected=1&mismatch=1' : '?connected=1';
        return await reply.redirect(`${serverPath(result.kind, result.serverId)}${query}`, 303);
      } catch (e) {
        // A person's browser is reading: Microsoft's refusals (502, e.g. a PKCE mismatch) get the page too.
        if (!isAppError(e) || e.code === 'JUNIPER_ERR_INTERNAL') throw e;
        if (e.status >= 500) request.log.warn({ code: e.code, status: e.status }, e.message);
        const kind = e.details?.kind as ServerKind | undefined;
        const serverId = e.details?.serverId as number | undefined;
        const back = kind && serverId ? serverPath(kind, serverId) : '/outgoing-servers';
        const body = html`<div class="card narrow">
  <h1>${e.code === 'JUNIPER_ERR_OAUTH_STATE' ? 'This Microsoft sign-in cannot be used' : 'Outlook account not connected'}</h1>
  <p class="error" role="alert">${e.message}</p>
  <p><a href="${back}">Back to the mail server</a></p>
</div>`;
        return reply
          .status(e.status)
          .header('content-type', 'text/html; charset=utf-8')
          .header('cache-control', 'no-store')
          .send(page('Outlook connection', body, { user: principal.user, csrfToken: principal.session?.csrfToken ?? null }));
      }
    });
  };
}
