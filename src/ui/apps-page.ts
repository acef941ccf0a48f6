// Apps: Juniper's modules as cards under a search bar that starts with a removable "Apps" facet, so that the
// Outlook procedure's "navigate to the Apps module. Then, remove the Apps filter from the search bar and type
// in Outlook. After that, install the module called Microsoft Outlook." is what an admin does here. Without
// script: the facet is a link, the search a GET form, Install and Uninstall POST forms with the CSRF field.
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Services } from '../services.js';
import { actorOf } from '../http/actor.js';
import { parseInput } from '../lib/validate.js';
import { installModule, installedModules, matchModules, modules, uninstallModule, type ModuleInfo, type ModuleName, type ModuleQuery } from '../settings/modules.js';
import { csrfField, formError, pageContext, redirectWithFlash, renderPage, text, type Flash, type Form } from './forms.js';
import { html, type SafeHtml } from './html.js';
import type { PageContext } from './layout.js';

const appsQuery = z.object({ filter: z.enum(['apps', 'none']).optional(), q: z.string().max(200).optional() });

/** The page's own address for a view: the facet is on unless `filter=none`. */
export function appsUrl(query: ModuleQuery): string {
  const params = new URLSearchParams();
  if (!query.appsOnly) params.set('filter', 'none');
  if (query.search !== '') params.set('q', query.search);
  const s = params.toString();
  return s === '' ? '/apps' : `/apps?${s}`;
}

function queryOf(raw: { filter?: string | undefined; q?: string | undefined }): ModuleQuery {
  return { appsOnly: raw.filter !== 'none', search: (raw.q ?? '').trim() };
}

function moduleCard(ctx: PageContext, m: ModuleInfo, installed: boolean, query: ModuleQuery): SafeHtml {
  const action = installed ? 'uninstall' : 'install';
  return html`<article class="card module" aria-labelledby="module-${m.name}">
  <h2 id="module-${m.name}">${m.title}</h2>
  <p class="muted"><code>${m.name}</code> · ${m.application ? 'App' : 'Module'}</p>
  <p>${m.summary}</p>
  <div class="actions">
    ${installed ? html`<span class="tag tag-green">Installed</span>` : html`<span class="tag tag-grey">Not installed</span>`}
    ${m.switchable
      ? html`<form method="post" action="/apps/${m.name}/${action}" class="inline">
      ${csrfField(ctx)}<input type="hidden" name="filter" value="${query.appsOnly ? 'apps' : 'none'}"><input type="hidden" name="q" value="${query.search}">
      <button type="submit" class="${installed ? 'danger' : ''}" aria-label="${installed ? 'Uninstall' : 'Install'} ${m.title}">${installed ? 'Uninstall' : 'Install'}</button>
    </form>`
      : null}
  </div>
</article>`;
}

function appsBody(ctx: PageContext, query: ModuleQuery, installed: Set<ModuleName>): SafeHtml {
  const shown = matchModules(modules, query);
  const withoutFacet = appsUrl({ ...query, appsOnly: false });
  return html`<div class="page-head"><h1>Apps</h1></div>
<form method="get" action="/apps" class="card searchbar" role="search">
  <label for="apps-search" class="visually-hidden">Search modules</label>
  <div class="searchbox">
    ${query.appsOnly
      ? html`<span class="facet">Apps <a href="${withoutFacet}" aria-label="Remove the Apps filter" title="Remove the Apps filter">×</a></span><input type="hidden" name="filter" value="apps">`
      : html`<input type="hidden" name="filter" value="none">`}
    <input type="text" id="apps-search" name="q" value="${query.search}" placeholder="Search…" spellcheck="false">
    <button type="submit" class="small">Search</button>
  </div>
</form>
${shown.length === 0
  ? html`<div class="card"><p>No ${query.appsOnly ? 'app' : 'module'} matches${query.search ? html` "${query.search}"` : null}.${query.appsOnly ? html` Technical modules such as Microsoft Outlook are not Apps: <a href="${withoutFacet}">remove the Apps filter</a> to search them too.` : null}</p></div>`
  : html`<div class="module-grid">${shown.map((m) => moduleCard(ctx, m, installed.has(m.name), query))}</div>`}`;
}

type AppsServices = Pick<Services, 'settings'>;

async function show(services: AppsServices, request: FastifyRequest, reply: FastifyReply, query: ModuleQuery, flash?: Flash, status = 200): Promise<FastifyReply> {
  const ctx = pageContext(request, reply, 'apps');
  if (flash) ctx.flash = flash;
  return renderPage(reply, 'Apps', appsBody(ctx, query, await installedModules(services)), ctx, status);
}

export function appsPage(services: AppsServices): FastifyPluginAsync {
  return async (app) => {
    // Admins only, as Settings: installing a module changes what every server may do.
    app.get('/apps', { config: { access: 'admin' } }, async (request, reply) => show(services, request, reply, queryOf(parseInput(appsQuery, request.query, 'query'))));

    for (const action of ['install', 'uninstall'] as const) {
      app.post<{ Params: { name: string }; Body: Form }>(`/apps/:name/${action}`, { config: { access: 'admin' } }, async (request, reply) => {
        const body = request.body ?? {};
        const query = queryOf({ filter: text(body, 'filter'), q: text(body, 'q') });
        try {
          const run = action === 'install' ? installModule : uninstallModule;
          const m = await run(services, request.params.name, actorOf(request));
          const said =
            action === 'install'
              ? `${m.title} installed. Next: Settings → Discuss → Custom Email Servers → Outlook Credentials.`
              : `${m.title} uninstalled: Connect your Outlook account is refused until it is installed again.`;
          return redirectWithFlash(reply, appsUrl(query), { kind: 'success', text: said });
        } catch (e) {
          const err = formError(e);
          return show(services, request, reply, query, { kind: 'error', text: err.message }, err.status);
        }
      });
    }
  };
}
