import type { PrincipalUser } from '../http/access.js';
import { html, type SafeHtml } from './html.js';

export type NavItem = 'home' | 'apps' | 'settings' | 'outgoing' | 'outbox' | 'incoming' | 'inbox' | 'parameters' | 'compose' | 'users' | 'account' | 'route';

export interface Flash {
  kind: 'success' | 'error' | 'warning';
  text: string;
}

export interface PageContext {
  user?: PrincipalUser | null;
  csrfToken?: string | null;
  /** System Parameters are shown only in developer mode (`?debug=1`, from the Technical menu), as the Outlook procedure describes. */
  developerMode?: boolean;
  flash?: Flash | null;
  active?: NavItem | undefined;
}

export function flashHtml(flash: Flash | null | undefined): SafeHtml | null {
  if (!flash) return null;
  // Messages are joined from parts that each end a sentence: never show "account.." for it.
  const text = flash.text.replace(/(?<!\.)\.\.(?!\.)/g, '.');
  return html`<p class="flash flash-${flash.kind}" role="${flash.kind === 'error' ? 'alert' : 'status'}">${text}</p>`;
}

function navLink(ctx: PageContext, id: NavItem, href: string, label: string): SafeHtml {
  return html`<a href="${href}"${id === ctx.active ? html` class="active" aria-current="page"` : null}>${label}</a>`;
}

/**
 * "The System Parameters can be accessed by activating Developer Mode (debug mode) in the menu": the switch
 * is the Technical menu's last item, on the page one is on (`?debug=1` / `?debug=0`).
 */
function developerModeLink(ctx: PageContext): SafeHtml {
  return ctx.developerMode
    ? html`<a href="?debug=0" class="menu-switch">Deactivate Developer Mode</a>`
    : html`<a href="?debug=1" class="menu-switch">Activate Developer Mode (debug mode)</a>`;
}

/**
 * The daily pages in the bar; the technical ones (Incoming Mail Servers, and System Parameters in developer
 * mode) under a Technical menu, where the Outlook procedure sends people for them. A <details> menu works
 * by keyboard and without script.
 */
function navigation(ctx: PageContext, user: PrincipalUser): SafeHtml {
  const admin = user.role === 'admin';
  const items: [NavItem, string, string, boolean][] = [
    ['home', '/', 'Home', true],
    ['apps', '/apps', 'Apps', admin],
    ['settings', '/settings', 'Settings', admin],
    ['outgoing', '/outgoing-servers', 'Outgoing Email Servers', true],
    ['outbox', '/outbox', 'Outbox', true],
    ['inbox', '/inbox', 'Inbox', true],
    ['users', '/users', 'Users', admin],
  ];
  const technical: [NavItem, string, string, boolean][] = [
    ['incoming', '/incoming-servers', 'Incoming Mail Servers', true],
    ['route', '/route', 'Route checker', admin],
    ['parameters', '/parameters', 'System Parameters', admin && ctx.developerMode === true],
  ];
  const shownTechnical = technical.filter(([, , , shown]) => shown);
  const inTechnical = shownTechnical.some(([id]) => id === ctx.active);
  return html`<nav class="mainnav" aria-label="Main">
    ${items.filter(([, , , shown]) => shown).map(([id, href, label]) => navLink(ctx, id, href, label))}
    <details class="menu${inTechnical ? ' active' : ''}"><summary>Technical</summary>
      <div class="menu-items">${shownTechnical.map(([id, href, label]) => navLink(ctx, id, href, label))}${admin ? developerModeLink(ctx) : null}</div>
    </details>
  </nav>`;
}

export function page(title: string, body: SafeHtml, ctx: PageContext = {}): string {
  const user = ctx.user;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Juniper</title>
<link rel="icon" href="/favicon.ico" type="image/svg+xml">
<link rel="stylesheet" href="/assets/app.css">
<script src="/assets/app.js" defer></script>
</head>
<body>
<a class="skip-link" href="#main">Skip to content</a>
<header class="topbar">
  <a class="brand" href="/">Juniper</a>
  ${user ? navigation(ctx, user) : null}
  ${user
    ? html`<div class="account">
    ${ctx.developerMode ? html`<a class="devmode" href="?debug=0" title="Leave developer mode">Developer mode</a>` : null}
    <a class="who" href="/account" title="Your account: password, API keys, personal servers">${user.name || user.login}${user.role === 'admin' ? ' (admin)' : ''}</a>
    <form method="post" action="/logout" class="inline"><input type="hidden" name="_csrf" value="${ctx.csrfToken ?? ''}"><button class="link">Sign out</button></form>
  </div>`
    : null}
</header>
<main id="main" tabindex="-1">
${flashHtml(ctx.flash)}
${body}
</main>
</body>
</html>`.value;
}
