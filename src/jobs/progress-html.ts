// A job's live progress bar on a page: server-rendered (it says what runs without JavaScript too) and
// animated by /jobs/progress.js, which polls GET /api/v1/jobs/:id with the page's session cookie.
import { html, type SafeHtml } from '../ui/html.js';
import type { Job } from './job-store.js';

export function jobProgressHtml(job: Job, what: string): SafeHtml {
  const total = job.total ?? 0;
  return html`<div class="job-progress flash flash-warning" role="status" data-job-url="/api/v1/jobs/${String(job.id)}">
<p><span data-job-text>${what}: ${String(job.done)} of ${job.total === null ? '…' : String(total)} messages</span> (job ${String(job.id)}; it goes on when you leave this page)</p>
<progress data-job-bar max="${String(Math.max(total, 1))}" value="${String(job.done)}"></progress>
</div>
<script src="/jobs/progress.js" defer></script>`;
}

export const PROGRESS_JS = `'use strict';
(function () {
  document.querySelectorAll('[data-job-url]').forEach(function (box) {
    var url = box.getAttribute('data-job-url');
    var text = box.querySelector('[data-job-text]');
    var bar = box.querySelector('[data-job-bar]');
    function plural(n, one) { return n + ' ' + one + (n === 1 ? '' : 's'); }
    function show(job) {
      var p = job.progress;
      if (p.total !== null) { bar.max = Math.max(p.total, 1); bar.value = p.done; }
      if (job.state === 'running') {
        text.textContent = 'Fetching: ' + p.done + ' of ' + (p.total === null ? '…' : p.total) + ' messages';
        setTimeout(poll, 1000);
      } else if (job.state === 'succeeded') {
        var r = job.result;
        bar.value = bar.max;
        box.className = 'job-progress flash ' + (r.quarantined > 0 ? 'flash-warning' : 'flash-success');
        text.textContent = 'Fetched ' + plural(r.fetched, 'message') + ': ' + r.stored + ' stored, ' + plural(r.duplicates, 'duplicate') + ', ' + r.quarantined + ' quarantined.';
      } else {
        box.className = 'job-progress flash flash-error';
        text.textContent = 'Fetch failed: ' + job.error;
      }
    }
    function poll() {
      fetch(url, { credentials: 'same-origin', headers: { accept: 'application/json' } })
        .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
        .then(show, function () { setTimeout(poll, 3000); });
    }
    poll();
  });
})();
`;
