// docs/errors.md is rendered from the catalogue; a test fails when the two drift apart.
import { errorCatalogue } from './errors.js';

export function renderErrorDocs(): string {
  const rows = Object.entries(errorCatalogue).map(([code, e]) => `| \`${code}\` | ${e.status} | ${e.message.replace(/\|/g, '\\|')} |`);
  return [
    '# Error codes',
    '',
    'Every API error is `{ "error": { "code": "…", "message": "…" } }`. The message below is the default; most',
    'errors add specifics (which server, which field, the remote server\'s own words). An error about one input also',
    'names it in `"field"`: a body field as a dotted path (`to`, `mails.3.subject`) or a header (`Idempotency-Key`).',
    '',
    'Generated from `src/lib/errors.ts` by `npm run docs:errors`; a test keeps the two in step.',
    '',
    '| code | HTTP status | default message |',
    '| --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
}
