// The Route checker: "send as …" → which server, which From, Reply-To and envelope sender, and why, computed
// by the function the dispatcher uses (explainRoute), so what it says is what the queue will do.
import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import type { Services } from '../services.js';
import { parseInput } from '../lib/validate.js';
import { explainRoute, type RouteExplanation } from '../outgoing/route-explainer.js';
import { pageContext, renderPage } from './forms.js';
import { html, type SafeHtml } from './html.js';

const routeQuery = z.object({ from: z.string().max(998).optional(), massMailing: z.string().optional() });

function resultCard(from: string, r: RouteExplanation): SafeHtml {
  return html`<div class="card" id="route-result" role="status">
  <h2>Sending as ${from}</h2>
  ${r.ok
    ? html`<dl class="facts">
    <dt>Server</dt><dd><a href="/outgoing-servers/${r.serverId}">${r.serverName}</a> <span class="muted">(rule ${r.rule})</span></dd>
    <dt>From</dt><dd>${r.from}</dd>
    <dt>Reply-To</dt><dd>${r.replyTo ?? html`<span class="muted">none</span>`}</dd>
    <dt>Envelope sender</dt><dd>${r.envelopeFrom}</dd>
  </dl>`
    : html`<p class="flash flash-error">${r.reason}</p>`}
  ${r.warnings.map((w) => html`<p class="flash flash-warning">${w}</p>`)}
  <h3>Why</h3>
  <ul class="explanation">${r.explanation.map((line) => html`<li>${line}</li>`)}</ul>
</div>`;
}

export function routePage(services: Pick<Services, 'outgoingServers' | 'parameters'>): FastifyPluginAsync {
  return async (app) => {
    // Admins only, as GET /api/v1/route: the explanation names every server, its From Filter and its owner.
    app.get('/route', { config: { access: 'admin' } }, async (request, reply) => {
      const q = parseInput(routeQuery, request.query, 'query');
      const from = (q.from ?? '').trim();
      const massMailing = q.massMailing !== undefined && q.massMailing !== '';
      const result =
        from === ''
          ? null
          : await explainRoute(
              { from, massMailing, forcedServerId: null },
              { servers: services.outgoingServers, parameters: services.parameters },
            );
      const ctx = pageContext(request, reply, 'route');
      const body = html`<div class="page-head"><h1>Route checker</h1></div>
<p class="muted">Which outgoing server sends a mail, with which From, and why: the same decision the Outbox takes.</p>
<form method="get" action="/route" class="card filters">
  <div><label for="route-from">Send as</label><input type="text" id="route-from" name="from" value="${from}" placeholder="john@example.com" spellcheck="false" required></div>
  <label class="check"><input type="checkbox" name="massMailing" value="on"${massMailing ? html` checked` : null}><span>Mass mailing</span></label>
  <div><button type="submit">Check</button></div>
</form>
${result ? resultCard(from, result) : null}`;
      return renderPage(reply, 'Route checker', body, ctx);
    });
  };
}
