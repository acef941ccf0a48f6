// How received attachments and raw messages are served. They come from any sender and are served from
// Juniper's own origin, so what they are labelled must not make them active content there: Content-Disposition:
// attachment stops a browser from rendering a response, but not a page from using it as a subresource, so an
// attachment served as text/javascript would be a same-origin script URL (<script src>), one served as
// text/css a stylesheet, image/svg+xml a document with script. Only types that browsers never run keep their
// label; everything else is application/octet-stream. The policy headers make such a response inert even if
// it were opened or embedded: a sandbox without scripts that may load nothing, not readable by other sites.

/** Types served as labelled: displayed at most, never executed. */
const SAFE_TYPES: ReadonlyMap<string, string> = new Map([
  ['image/png', 'image/png'],
  ['image/jpeg', 'image/jpeg'],
  ['image/gif', 'image/gif'],
  ['application/pdf', 'application/pdf'],
  // The sender's charset is not kept; the bytes are a download either way, and a fixed charset leaves
  // nothing for a browser to guess.
  ['text/plain', 'text/plain; charset=utf-8'],
]);

/** The Content-Type an attachment of the sender's `contentType` is served with. */
export function servedAttachmentType(contentType: string): string {
  return SAFE_TYPES.get(contentType.split(';')[0]!.trim().toLowerCase()) ?? 'application/octet-stream';
}

/** The policy of every attachment and raw-message response (the onSend hook keeps a route's own CSP). */
export const DOWNLOAD_CSP = "sandbox; default-src 'none'; frame-ancestors 'none'";

export const DOWNLOAD_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': DOWNLOAD_CSP,
  'x-content-type-options': 'nosniff',
  'cross-origin-resource-policy': 'same-origin',
};
