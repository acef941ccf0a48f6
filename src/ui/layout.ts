import type { PrincipalUser } from '../http/access.js';
import { html, type SafeHtml } from './html.js';

export interface PageContext {
  user?: PrincipalUser | null;
  csrfToken?: string | null;
}

export function page(title: string, body: SafeHtml, ctx: PageContext = {}): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Juniper</title>
<link rel="stylesheet" href="/assets/app.css">
</head>
<body>
<header class="topbar">
  <a class="brand" href="/">Juniper</a>
  ${ctx.user
    ? html`<nav>
    <span class="who">${ctx.user.name || ctx.user.login}${ctx.user.role === 'admin' ? ' (admin)' : ''}</span>
    <form method="post" action="/logout" class="inline"><input type="hidden" name="_csrf" value="${ctx.csrfToken ?? ''}"><button class="link">Sign out</button></form>
  </nav>`
    : null}
</header>
<main>${body}</main>
</body>
</html>`.value;
}
