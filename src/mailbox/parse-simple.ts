// A faster reader for the everyday message shapes (issue 9): postal-mime splits the message into its parts and
// undoes their transfer encoding in one synchronous pass over the bytes, where mailparser runs every message
// through mailsplit and a chain of Node streams (about 2.7 times the cost). Everything else is mailparser's
// own code, so that what is stored does not depend on which reader ran: each part's header block goes
// through mailsplit's MimeNode (content type, charset, disposition, filename as mailparser sees them), the
// message's header fields through MailParser's own header decoding (libmime: subjects, addresses, dates),
// text through libmime's charset decoder (iconv-lite, encoding-japanese) and the text and HTML are put
// together by mailparser's rules. A message this reader is not sure of (8-bit or odd header lines, line
// ends other than CRLF, transfer encodings other than 7bit/8bit/binary/base64, embedded messages, reports,
// flowed text, HTML that mailparser would turn into text, a bad Date, many parts, large messages) is
// declined: readSimple answers undefined and parse.ts hands it to mailparser. parse-simple.test.ts proves
// the two agree on every message this reader accepts, over the corpus, the fixtures and poison mutants.
import { Buffer } from 'node:buffer';
import mailsplit from '@zone-eu/mailsplit';
import libbase64 from 'libbase64';
import libmime from 'libmime';
import charsets from 'libmime/lib/charset.js';
import { MailParser, type Headers } from 'mailparser';
import PostalMime from 'postal-mime';
import type { StreamedAttachment, StreamedMail } from './parse-stream.js';

/** Larger messages go to mailparser, which reads them in slices (parse.ts): the memory target is for those. */
export const SIMPLE_MAX_BYTES = 1024 * 1024;
/** mailsplit limits a header block (and refuses some) where postal-mime allows 2 MB: stay well below both. */
const SIMPLE_MAX_HEADER_BYTES = 64 * 1024;
/** mailparser refuses more than 1,000 parts; a simple message has a handful. */
const SIMPLE_MAX_PARTS = 50;

// One header field (name, colon) or the continuation of the one before it; printable ASCII and tabs only.
const FIELD_LINE = /^[!-9;-~]+:[\t\x20-\x7e]*$/;
const CONTINUATION_LINE = /^[\t ][\t\x20-\x7e]*$/;
const TEXT_TYPES = ['text/plain', 'text/html'];
const PASS_THROUGH = new Set(['', '7bit', '8bit', 'binary']);

// The slice of postal-mime's parse tree (its MimeNode, not part of its typed API) read here.
interface PostalNode {
  state: 'header' | 'body' | 'finished';
  headerLines: string[];
  contentType: { parsed: { value: string; params: Record<string, string> }; multipart: string | false };
  childNodes: PostalNode[];
  contentDecoder: unknown;
}

// MailParser's header decoding (not part of its typed API): header lines in, the `headers` Map it emits out.
interface HeaderDecoder {
  processHeaders(lines: { key: string; line: string }[]): Headers;
}

// PostalMime's line loop (not part of its typed API): what parse() does before it decodes and assembles.
interface PostalLines {
  started: boolean;
  buf: ArrayBuffer;
  av: Uint8Array;
  readPos: number;
  root: PostalNode;
  currentNode: PostalNode;
  readLine(): { bytes: Uint8Array; done: boolean };
  processLine(line: Uint8Array, isFinal: boolean): Promise<void>;
}

/** Where a part's body lines lie in the message: from the first one's start to the last one's line end. */
type Bodies = Map<PostalNode, { start: number; end: number }>;

/**
 * The parts of the message by postal-mime's line loop (its boundaries, its header blocks), with where each
 * part's body lies in the message. Its decoders are dropped as each part's body begins: the bodies are taken
 * from the message's bytes and decoded as mailsplit decodes them, and parse()'s own results (text through
 * TextDecoder, header fields by its own rules) are not used, so they are not made.
 */
async function splitParts(raw: Buffer): Promise<{ root: PostalNode; bodies: Bodies }> {
  const parser = new PostalMime({ attachmentEncoding: 'arraybuffer' }) as unknown as PostalLines;
  parser.started = true;
  parser.buf = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length) as ArrayBuffer;
  parser.av = new Uint8Array(parser.buf);
  parser.readPos = 0;
  const bodies: Bodies = new Map();
  // The last line comes with done: processLine then finalizes every part (plainBytes: the message is not empty).
  while (parser.readPos < parser.av.length) {
    const start = parser.readPos;
    const line = parser.readLine();
    const node = parser.currentNode;
    const inBody = node.state === 'body';
    await parser.processLine(line.bytes, line.done);
    // A boundary line moves the parser to another part; any other line in a body belongs to it.
    if (inBody && parser.currentNode === node) {
      const body = bodies.get(node);
      if (body) body.end = parser.readPos;
      else bodies.set(node, { start, end: parser.readPos });
    }
    if (parser.currentNode.state === 'body') parser.currentNode.contentDecoder = null;
  }
  return { root: parser.root, bodies };
}

/**
 * The message's header fields that parse.ts describe() reads. Only these are decoded: mailparser decodes
 * every field (addresses as text and HTML, dates, encoded words), and Outlook's mail carries dozens it never
 * reads (Received, ARC, DKIM, X-MS-Exchange-*). Each field is decoded on its own, so leaving others out
 * changes nothing in these; parse-simple.test.ts compares every stored field with mailparser's.
 */
const DESCRIBED = new Set(['from', 'to', 'cc', 'subject', 'date', 'message-id', 'in-reply-to', 'references', 'content-type', 'x-original-to', 'delivered-to', 'auto-submitted', 'x-failed-recipients']);

let headerDecoder: HeaderDecoder | undefined;
// One MailParser serves for its header decoding only: processHeaders keeps no state between calls.
const decodeHeaders = (lines: { key: string; line: string }[]): Headers =>
  (headerDecoder ??= new MailParser() as unknown as HeaderDecoder).processHeaders(lines);

/** A part as mailparser's tree holds it (mail-parser.js createNode), its body as mailsplit hands it on. */
interface Part {
  root: boolean;
  contentType: string;
  isAttachment: boolean;
  charset: string | false;
  filename: string | false;
  contentId: string | undefined;
  /** The part's header lines as mailsplit lists them (key lower-cased, line as written). */
  lines: { key: string; line: string }[];
  /** The body after its transfer encoding, as mailsplit hands it on (CRLF kept, no CRLF before the next boundary). */
  body: Buffer | undefined;
  children: Part[];
}

/** Cheap checks on the bytes before parsing: CRLF line ends only, no NUL, a clean ASCII header section. */
function plainBytes(raw: Buffer): boolean {
  if (raw.length === 0 || raw.length > SIMPLE_MAX_BYTES || raw.indexOf(0) !== -1) return false;
  for (let at = raw.indexOf(10); at !== -1; at = raw.indexOf(10, at + 1)) if (at === 0 || raw[at - 1] !== 13) return false;
  for (let at = raw.indexOf(13); at !== -1; at = raw.indexOf(13, at + 1)) if (raw[at + 1] !== 10) return false;
  if (raw[raw.length - 2] !== 13 || raw[raw.length - 1] !== 10) return false;
  const end = raw.indexOf('\r\n\r\n');
  if (end <= 0 || end > SIMPLE_MAX_HEADER_BYTES) return false;
  return cleanHeaderLines(raw.toString('latin1', 0, end).split('\r\n'));
}

function cleanHeaderLines(lines: string[]): boolean {
  if (lines.length === 0 || !FIELD_LINE.test(lines[0]!)) return false;
  return lines.every((line) => FIELD_LINE.test(line) || CONTINUATION_LINE.test(line));
}

/**
 * The part's body after its transfer encoding, as mailsplit hands it to mailparser: the bytes between its
 * header block and the CRLF before the next boundary (the root's: to the end), base64 decoded as libbase64's
 * Decoder does (characters outside the alphabet dropped first). Undefined for a part that ends otherwise.
 */
function bodyOf(raw: Buffer, span: { start: number; end: number } | undefined, encoding: string, root: boolean): Buffer | undefined {
  let body = span ? raw.subarray(span.start, span.end) : raw.subarray(0, 0);
  if (!root && span) {
    // Its last line end belongs to the boundary line that must follow (never the end of the message).
    if (raw[span.end] !== 0x2d || raw[span.end + 1] !== 0x2d) return undefined;
    body = body.subarray(0, body.length - 2);
  }
  return encoding === 'base64' ? libbase64.decode(body.toString('latin1').replace(/[^a-zA-Z0-9+/=]+/g, '')) : body;
}

function readPart(node: PostalNode, parent: InstanceType<typeof mailsplit.MimeNode> | false, raw: Buffer, bodies: Bodies, count: { parts: number }): Part | undefined {
  if (++count.parts > SIMPLE_MAX_PARTS) return undefined;
  const root = parent === false;
  if (!cleanHeaderLines(node.headerLines)) return undefined;
  const split = new mailsplit.MimeNode(parent, {});
  split.addHeaderChunk(Buffer.from(`${node.headerLines.join('\r\n')}\r\n\r\n`, 'latin1'));
  split.parseHeaders();
  const lines = (split.headers as InstanceType<typeof mailsplit.Headers>).getList();
  const contentType = split.contentType || (root ? 'text/plain' : '');
  if (!contentType || contentType !== node.contentType.parsed.value) return undefined;

  if (split.multipart) {
    const boundary = split._boundary ? split._boundary.toString('latin1') : '';
    if (!['mixed', 'alternative', 'related'].includes(split.multipart) || node.contentType.multipart !== split.multipart) return undefined;
    // Both parsers must see the same delimiters, and a multipart that is never closed ends differently in each.
    if (!boundary || boundary !== node.contentType.parsed.params.boundary || node.childNodes.length === 0) return undefined;
    if (raw.indexOf(`\r\n--${boundary}--\r\n`) === -1) return undefined;
    const children: Part[] = [];
    for (const child of node.childNodes) {
      const part = readPart(child, split, raw, bodies, count);
      if (!part) return undefined;
      children.push(part);
    }
    return { root, contentType, isAttachment: false, charset: false, filename: false, contentId: undefined, lines, body: undefined, children };
  }

  // mailsplit takes a boundary parameter as a boundary whatever the type says; postal-mime only for multipart.
  if (node.contentType.multipart || node.childNodes.length > 0 || split._boundary) return undefined;
  // Embedded messages and reports (their ids and fields), other text types (calendar invitations, CSV) and
  // flowed text are read by mailparser alone.
  if (contentType.startsWith('message/') || contentType.startsWith('multipart/') || (contentType.startsWith('text/') && !TEXT_TYPES.includes(contentType))) return undefined;
  if (split.flowed) return undefined;
  const encoding = split.encoding || '';
  if (encoding !== 'base64' && !PASS_THROUGH.has(encoding)) return undefined;
  const body = bodyOf(raw, bodies.get(node), encoding, root);
  if (!body) return undefined;

  // mail-parser.js createNode: what is an attachment and what is inline text.
  let disposition = split.disposition || '';
  if (disposition && !['attachment', 'inline'].includes(disposition)) disposition = 'attachment';
  if (!disposition) disposition = TEXT_TYPES.includes(contentType) ? 'inline' : 'attachment';
  const isAttachment = !TEXT_TYPES.includes(contentType) || disposition !== 'inline';
  // An empty inline text part comes out of mailparser as one line end: not worth copying.
  if (!isAttachment && !root && body.length === 0) return undefined;
  const contentId = isAttachment ? firstString(decodeHeaders(lines).get('content-id')) : undefined;
  return { root, contentType, isAttachment, charset: split.charset, filename: split.filename, contentId, lines, body, children: [] };
}

const firstString = (value: unknown): string | undefined => {
  const first: unknown = Array.isArray(value) ? value[0] : value;
  return typeof first === 'string' ? first : undefined;
};

/** mail-parser.js: an inline text part's text, from its charset, with LF line ends. */
function textOf(part: Part): string {
  const charset = part.charset || 'utf-8';
  const body = part.body!;
  const utf8 = ['ascii', 'usascii', 'utf8'].includes(charset.toLowerCase().replace(/[^a-z0-9]+/g, ''));
  const bytes = utf8 ? body : Buffer.from(charsets.decode(body, charset), 'utf-8');
  return bytes.toString().replace(/\r?\n/g, '\n');
}

/** mail-parser.js getTextContent without HTML made from text or text from HTML (those go to mailparser). */
function texts(tree: Part): { text: string | undefined; html: string | undefined } | undefined {
  const leaves: Part[] = [];
  const walk = (part: Part) => (part.children.length ? part.children.forEach(walk) : leaves.push(part));
  walk(tree);
  const inline = (type: string) => leaves.some((p) => !p.isAttachment && p.contentType === type);
  const hasText = inline('text/plain');
  const hasHtml = inline('text/html');
  const text: string[] = [];
  const html: string[] = [];
  let sure = true;
  const visit = (part: Part, alternative: boolean) => {
    if (!part.isAttachment && part.body) {
      const content = textOf(part);
      if (content && part.contentType === 'text/plain') {
        // mailparser would add the text as HTML too.
        if (!alternative && hasHtml) sure = false;
        text.push(content);
      } else if (content && part.contentType === 'text/html') {
        // mailparser would make text of this HTML (html-to-text).
        if ((!alternative && hasText) || (part.root && !hasText)) sure = false;
        html.push(content);
      }
    }
    for (const child of part.children) visit(child, alternative || part.contentType === 'multipart/alternative');
  };
  visit(tree, false);
  if (!sure) return undefined;
  return { text: text.length ? text.join('\n') : undefined, html: html.length ? html.join('<br/>\n') : undefined };
}

function attachments(tree: Part): StreamedAttachment[] {
  const out: StreamedAttachment[] = [];
  const walk = (part: Part) => {
    if (part.isAttachment && part.body) {
      const contentType = part.contentType === 'application/octet-stream' && part.filename ? libmime.detectMimeType(part.filename) || part.contentType : part.contentType;
      out.push({ filename: part.filename || undefined, contentType, contentId: part.contentId, content: part.body });
    }
    part.children.forEach(walk);
  };
  walk(tree);
  return out;
}

/** mailparser reads a Date it cannot parse as the time of parsing: such a message is left to it. */
function dateIsValid(lines: { key: string; line: string }[]): boolean {
  const line = lines.find((l) => l.key === 'date');
  if (!line) return true;
  const value = Buffer.from(String(libmime.decodeHeader(line.line).value ?? '').trim(), 'binary').toString();
  return !Number.isNaN(new Date(value).getTime());
}

/** The message as parse-stream.ts readMail gives it, or undefined when the message is not one this reader is sure of. */
export async function readSimple(raw: Buffer): Promise<StreamedMail | undefined> {
  if (!plainBytes(raw)) return undefined;
  let split: Awaited<ReturnType<typeof splitParts>>;
  try {
    split = await splitParts(raw);
  } catch {
    return undefined;
  }
  const tree = readPart(split.root, false, raw, split.bodies, { parts: 0 });
  if (!tree) return undefined;
  const body = texts(tree);
  if (!body) return undefined;
  if (!dateIsValid(tree.lines)) return undefined;
  return { headers: decodeHeaders(tree.lines.filter((l) => DESCRIBED.has(l.key))), headerKeys: tree.lines.map((l) => l.key), text: body.text, html: body.html, attachments: attachments(tree) };
}
