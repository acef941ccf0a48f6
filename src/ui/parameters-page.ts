// System Parameters (admins, developer mode): the procedure sets mail.default.from and mail.catchall.domain
// here. Known keys are validated by the service; the page shows each rule's description beside the value.
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Services } from '../services.js';
import { actorOf } from '../http/actor.js';
import { knownParameters, ruleOf } from '../settings/parameter-rules.js';
import type { ParameterView } from '../settings/parameters.js';
import { csrfField, developerMode, formError, pageContext, redirectWithFlash, renderPage, text, type Form } from './forms.js';
import { flashHtml, type PageContext } from './layout.js';
import { html, type SafeHtml } from './html.js';

/** A refused save: shown again in the row (or the add form) it came from, with the entered value. */
interface Refused {
  key: string;
  value: string;
  message: string;
  fromAddForm: boolean;
}

function rowHtml(ctx: PageContext, p: ParameterView, i: number, refused: Refused | undefined): SafeHtml {
  const mine = refused && !refused.fromAddForm && refused.key === p.key ? refused : undefined;
  const formId = `set-${i}`;
  return html`<tr>
  <td><code>${p.key}</code>${p.description ? html`<span class="sub">${p.description}</span>` : null}</td>
  <td>
    <input type="text" form="${formId}" name="value" value="${mine ? mine.value : p.value}" aria-label="Value of ${p.key}" spellcheck="false">
    ${p.isDefault ? html`<span class="sub">default value</span>` : null}
    ${mine ? html`<span class="sub error-text">${mine.message}</span>` : null}
  </td>
  <td><div class="actions">
    <form id="${formId}" method="post" action="/parameters" class="inline">${csrfField(ctx)}<input type="hidden" name="key" value="${p.key}"><button type="submit" class="secondary small">Save</button></form>
    ${p.isDefault
      ? null
      : html`<form method="post" action="/parameters/delete" class="inline">${csrfField(ctx)}<input type="hidden" name="key" value="${p.key}"><button type="submit" class="danger small">${p.description ? 'Reset' : 'Delete'}</button></form>`}
  </div></td>
</tr>`;
}

function parametersBody(ctx: PageContext, params: ParameterView[], refused?: Refused): SafeHtml {
  const added = refused?.fromAddForm ? refused : undefined;
  const unsetKnown = Object.keys(knownParameters).filter((k) => !params.some((p) => p.key === k));
  return html`<div class="page-head"><h1>System Parameters</h1></div>
<p class="muted">Known parameters are checked before they are stored; Reset returns one to its default. Leave developer mode with <a href="?debug=0">?debug=0</a>.</p>
${refused && !refused.fromAddForm ? flashHtml({ kind: 'error', text: refused.message }) : null}
<div class="card table-card"><table>
  <thead><tr><th>Key</th><th class="value-col">Value</th><th><span class="visually-hidden">Actions</span></th></tr></thead>
  <tbody>${params.map((p, i) => rowHtml(ctx, p, i, refused))}</tbody>
</table></div>
<form method="post" action="/parameters" class="card">
  ${csrfField(ctx)}<input type="hidden" name="add" value="1">
  <h2>Add a parameter</h2>
  ${added ? flashHtml({ kind: 'error', text: added.message }) : null}
  <div class="grid">
    <div><label for="new-key">Key</label><input type="text" id="new-key" name="key" value="${added?.key ?? ''}" list="known-keys" required spellcheck="false" placeholder="mail.default.from"></div>
    <div><label for="new-value">Value</label><input type="text" id="new-value" name="value" value="${added?.value ?? ''}" required spellcheck="false"></div>
  </div>
  <datalist id="known-keys">${unsetKnown.map((k) => html`<option value="${k}">`)}</datalist>
  ${unsetKnown.length ? html`<p class="help">Not set yet: ${unsetKnown.map((k, i) => html`${i ? ', ' : ''}<code>${k}</code>`)}.</p>` : null}
  <button type="submit">Add</button>
</form>`;
}

function developerModeHint(): SafeHtml {
  return html`<div class="card narrow">
  <h1>System Parameters</h1>
  <p>System Parameters are shown in developer mode.</p>
  <p><a class="button" href="/parameters?debug=1">Activate developer mode</a></p>
  <p class="help">Any page opened with <code>?debug=1</code> turns developer mode on for this browser; <code>?debug=0</code> turns it off.</p>
</div>`;
}

export function parametersPage(services: Pick<Services, 'parameters' | 'settings'>): FastifyPluginAsync {
  // Changes as the CLI and the API make them: the mass_mailing.* keys are refused what Settings refuses.
  const { parameters, settings } = services;

  async function render(request: FastifyRequest, reply: FastifyReply, refused?: Refused, status = 200) {
    const ctx = pageContext(request, reply, 'parameters');
    return renderPage(reply, 'System Parameters', parametersBody(ctx, await parameters.list(), refused), ctx, status);
  }

  return async (app) => {
    app.get('/parameters', { config: { access: 'admin' } }, async (request, reply) => {
      if (!developerMode(request)) {
        const ctx = pageContext(request, reply, 'parameters');
        return renderPage(reply, 'System Parameters', developerModeHint(), ctx);
      }
      return render(request, reply);
    });

    app.post<{ Body: Form }>('/parameters', { config: { access: 'admin' } }, async (request, reply) => {
      const key = text(request.body, 'key').trim();
      const value = text(request.body, 'value');
      try {
        await settings.setParameter(key, value, actorOf(request));
      } catch (e) {
        const err = formError(e);
        return render(request, reply, { key, value, message: err.message, fromAddForm: text(request.body, 'add') === '1' }, err.status);
      }
      return redirectWithFlash(reply, '/parameters', { kind: 'success', text: `${key} saved.` });
    });

    app.post<{ Body: Form }>('/parameters/delete', { config: { access: 'admin' } }, async (request, reply) => {
      const key = text(request.body, 'key').trim();
      let removed: boolean;
      try {
        removed = await settings.unsetParameter(key, actorOf(request));
      } catch (e) {
        const err = formError(e);
        return redirectWithFlash(reply, '/parameters', { kind: 'error', text: err.message });
      }
      const message = !removed ? `${key} was not set.` : ruleOf(key)?.defaultValue !== undefined ? `${key} reset to its default.` : `${key} deleted.`;
      return redirectWithFlash(reply, '/parameters', { kind: 'success', text: message });
    });
  };
}
