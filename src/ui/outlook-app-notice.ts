// The Outlook app's own trouble (a problem Microsoft reported for the credentials, or a client secret that
// expires soon) where people look: beside Outlook Credentials in Settings, where it is fixed, and on top of the
// server lists and Home, which would otherwise say "Token Valid" or "done" while every Outlook server is stopped.
import type { OutlookAppTrouble } from '../oauth/app-trouble.js';
import { troubleSentences } from '../oauth/app-trouble.js';
import type { AppProblem } from '../oauth/app-status.js';
import { html, type SafeHtml } from './html.js';

export interface AffectedServer {
  kind: 'outgoing' | 'incoming';
  id: number;
  name: string;
}

/** Settings: what Microsoft refused, since when, which servers it stops, and what saving here does. */
export function appProblemNotice(problem: AppProblem | null, affected: readonly AffectedServer[]): SafeHtml | null {
  if (!problem) return null;
  const servers = affected.length
    ? html`It stops every Outlook server: ${affected.map((s, i) => html`${i > 0 ? ', ' : ''}<a href="/${s.kind}-servers/${s.id}">${s.name}</a> (${s.kind})`)}.`
    : html`It stops every Outlook server.`;
  return html`<div class="flash flash-error" role="alert" id="outlook-app-problem">
  <p><strong>Microsoft refused these Outlook Credentials${problem.code ? html` (${problem.code})` : null}</strong> since ${problem.since}: ${problem.message}</p>
  <p>${servers} Their mails wait; saving corrected credentials here sends them at once.</p>
</div>`;
}

/** A list page or Home: one line each, linking to Settings (admins fix it there; others ask one). */
export function appTroubleBanner(trouble: OutlookAppTrouble, admin: boolean): SafeHtml | null {
  const [problem, expiry] = [trouble.problem ? troubleSentences({ problem: trouble.problem, secretWarning: null })[0]! : null, trouble.secretWarning];
  if (!problem && !expiry) return null;
  const where = admin ? html` <a href="/settings#outlook-credentials">Open Settings</a>.` : html` Ask an administrator to fix it in Settings.`;
  return html`${problem ? html`<p class="flash flash-error" role="alert">${problem}${where}</p>` : null}${
    expiry ? html`<p class="flash flash-${expiry.level === 'critical' ? 'error' : 'warning'}" role="alert">${expiry.message}${where}</p>` : null
  }`;
}
