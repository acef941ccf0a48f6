// Headers every response carries, pages, API answers, redirects and errors alike: no other site may frame
// Juniper (clickjacking a "Connect" or "Save" button), and a page may load only Juniper's own script and
// stylesheet (an injected <script> or inline handler does not run). The pages need no inline script or style:
// their one script and one stylesheet are served from /assets.
//
// A route that sets its own Content-Security-Policy keeps it: the message HTML iframe (/inbox/:id/html) has a
// stricter, sandboxed policy that lets only Juniper's own inbox page frame it.
import type { FastifyInstance } from 'fastify';

// No form-action: the Connect Outlook forms answer with a redirect to Microsoft's sign-in page, and browsers
// apply form-action to the redirect target too.
export const PAGE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-src 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** The headers for a response, given the Content-Security-Policy its route set (if any). */
export function securityHeaders(routeCsp: string | undefined): Record<string, string> {
  const csp = routeCsp ?? PAGE_CSP;
  return {
    'content-security-policy': csp,
    // For browsers that predate frame-ancestors; it follows the policy so the two cannot disagree.
    'x-frame-options': /frame-ancestors 'self'/.test(csp) ? 'SAMEORIGIN' : 'DENY',
    'x-content-type-options': 'nosniff',
    // Same-origin requests keep their Referer and Origin (the sign-in form's Origin check needs it); other
    // sites, Microsoft's sign-in page included, learn nothing of Juniper's URLs (ids, query strings).
    'referrer-policy': 'same-origin',
  };
}

export function installSecurityHeaders(app: FastifyInstance): void {
  app.addHook('onSend', async (_request, reply, payload) => {
    const routeCsp = reply.getHeader('content-security-policy');
    const headers = securityHeaders(typeof routeCsp === 'string' ? routeCsp : undefined);
    for (const [name, value] of Object.entries(headers)) {
      // A route's own stricter value (the iframe's no-referrer) wins over the default.
      if (name === 'content-security-policy' || !reply.hasHeader(name)) void reply.header(name, value);
    }
    return payload;
  });
}
