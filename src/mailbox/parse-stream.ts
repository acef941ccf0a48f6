// Reads a message with mailparser's streaming MailParser and keeps only what parseMessage (parse.ts) stores:
// the top-level header fields, the names of the raw header lines, the text and HTML bodies and each
// attachment's name, type, Content-ID and bytes. Attachment bytes are copied, as the parser decodes them,
// into one buffer for the whole message and each attachment is a view of it: gathering each attachment's
// pieces and joining them once it ends would hold a large attachment twice for a moment and leave its pieces
// behind as garbage (issue 9: heap growth of a 25 MB message at most 3 times its size).
import { pipeline, type Readable } from 'node:stream';
import { MailParser, type AttachmentStream, type Headers, type MailParserOptions, type MessageText } from 'mailparser';

export interface StreamedAttachment {
  filename: string | undefined;
  contentType: string;
  contentId: string | undefined;
  content: Buffer;
}

export interface StreamedMail {
  /** The message's own header fields, decoded by mailparser (addresses, dates, structured values). */
  headers: Headers;
  /** Lower-cased names of the message's header lines, in order, one per line as written. */
  headerKeys: string[];
  text: string | undefined;
  html: string | undefined;
  attachments: StreamedAttachment[];
}

/**
 * Where the decoded attachment bytes of one message go. Decoding never makes a part larger than its
 * encoded form, so the message's size bounds them all. Large attachments are base64 nearly always, so the
 * buffer starts at what base64 of the whole message decodes to, and is replaced once by one of the full
 * message size when parts in other encodings need more (views handed out earlier keep the old one alive).
 */
class AttachmentBytes {
  private buffer: Buffer | undefined;
  private used = 0;

  constructor(private readonly messageSize: number) {}

  /** Where the next attachment will start. */
  get offset(): number {
    return this.used;
  }

  append(chunk: Buffer): void {
    const needed = this.used + chunk.length;
    if (!this.buffer || needed > this.buffer.length) {
      // allocUnsafeSlow: a buffer of its own, never a slice of Node's shared pool.
      const size = this.buffer ? Math.max(this.messageSize, needed) : Math.max(Math.ceil((this.messageSize * 3) / 4), needed);
      const next = Buffer.allocUnsafeSlow(size);
      this.buffer?.copy(next, 0, 0, this.used);
      this.buffer = next;
    }
    chunk.copy(this.buffer, this.used);
    this.used = needed;
  }

  /** The bytes appended since `from`. */
  since(from: number): Buffer {
    return this.buffer ? this.buffer.subarray(from, this.used) : Buffer.alloc(0);
  }
}

type ParserOutput = MessageText | (AttachmentStream & { type: 'attachment' });

/** The slice of MailParser's internals textFromHtml reads: its part tree, once the message is read. */
interface PartNode {
  contentType?: string;
  textContent?: string;
  root?: boolean;
  children?: PartNode[];
}
interface ParserInternals {
  tree: PartNode | false;
  hasText: boolean;
  options: MailParserOptions;
}

/**
 * The message's text as mailparser's getTextContent puts it together, with `htmlAsText` making text of the
 * HTML parts it would convert (an HTML-only message, HTML beside a text part outside multipart/alternative).
 * mailparser ran with skipHtmlToText and left '' in their places. Embedded messages' header summaries
 * (showMeta) are not repeated: parse.ts keeps embedded messages as attachments (ignoreEmbedded).
 */
function textFromHtml(parser: ParserInternals, htmlAsText: (html: string) => string): string | undefined {
  const text: string[] = [];
  const visit = (node: PartNode, alternative: boolean) => {
    const content = node.textContent;
    if (content) {
      if (node.contentType === 'text/plain') text.push(content);
      else if (node.contentType === 'message/delivery-status' && !parser.options.keepDeliveryStatus) text.push(content);
      else if (node.contentType === 'text/html' && ((!alternative && parser.hasText) || (node.root && !parser.hasText))) text.push(htmlAsText(content));
    }
    for (const child of node.children ?? []) visit(child, alternative || node.contentType === 'multipart/alternative');
  };
  if (parser.tree) visit(parser.tree, false);
  return text.length ? text.join('\n') : undefined;
}

/**
 * `input` is the message, `size` its length in bytes. Rejects with mailparser's first error, if any. With
 * `htmlAsText` (and skipHtmlToText in the options), the text mailparser would make of HTML is made by it.
 */
export async function readMail(input: Readable, size: number, options: MailParserOptions, htmlAsText?: (html: string) => string): Promise<StreamedMail> {
  const parser = new MailParser(options);
  const mail: StreamedMail = { headers: new Map(), headerKeys: [], text: undefined, html: undefined, attachments: [] };
  parser.once('headers', (headers: Headers) => (mail.headers = headers));
  parser.once('headerLines', (lines: { key: string }[]) => (mail.headerKeys = lines.map((l) => l.key)));
  const bytes = new AttachmentBytes(size);
  // An input that fails destroys the parser with its error, which ends the loop below with it.
  pipeline(input, parser, () => undefined);
  for await (const output of parser as AsyncIterable<ParserOutput>) {
    if (output.type === 'text') {
      // The parser has read the whole message by now: its part tree holds every inline text.
      // Only a message with HTML has text to make of it: every other one keeps mailparser's own, whatever its internals.
      mail.text = htmlAsText && options.skipHtmlToText && output.html !== undefined ? textFromHtml(parser as unknown as ParserInternals, htmlAsText) : output.text;
      mail.html = output.html;
      continue;
    }
    // The parser goes on with the rest of the message only once this attachment is read and released.
    const start = bytes.offset;
    for await (const chunk of output.content as AsyncIterable<Buffer>) bytes.append(chunk);
    mail.attachments.push({ filename: output.filename, contentType: output.contentType, contentId: output.contentId, content: bytes.since(start) });
    output.release?.();
  }
  return mail;
}
