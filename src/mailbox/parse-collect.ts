// mailparser's simpleParser (3.14.2, with keepCidLinks as Juniper sets it), except where attachment bytes go.
// simpleParser collects each attachment's decoded pieces and joins them at its end, so a 19 MB attachment is
// in memory twice for a moment and its pieces stay as garbage; here they are copied, as they arrive, into
// one buffer, and each attachment is a view of it. Decoding never makes a part larger than its encoded
// bytes, so the message's size bounds them all; the buffer starts at what base64 decodes a message of that
// size to, since large attachments are base64 almost always. Everything else follows simpleParser line by line.
import type { Readable } from 'node:stream';
import { MailParser, type Attachment, type AttachmentStream, type MailParserOptions, type ParsedMail } from 'mailparser';

/** Decoded bytes per encoded byte of base64 (3 for 4). */
const BASE64_SHARE = 3 / 4;

type Collected = Record<string, unknown> & { attachments: Attachment[] };

/** The message (its length bounds the attachments) and the stream of its bytes mailparser reads. */
export function collectMail(input: Readable, size: number, options: MailParserOptions): Promise<ParsedMail> {
  return new Promise<ParsedMail>((resolve, reject) => {
    // MailParser may emit a non-fatal 'error' and still reach 'end': the first error or the result wins.
    let settled = false;
    const settle = (err: Error | null, mail?: ParsedMail) => {
      if (settled) return;
      settled = true;
      if (err) reject(err);
      else resolve(mail!);
    };
    const mail: Collected = { attachments: [] };
    const parser = new MailParser(options);
    let arena: Buffer | undefined;
    let used = 0;
    parser.on('error', (err: Error) => settle(err));
    parser.on('headers', (headers) => {
      mail.headers = headers;
      mail.headerLines = parser.headerLines;
      if (parser.otp) mail.otp = parser.otp;
    });
    let reading = false;
    const reader = () => {
      reading = true;
      const data = parser.read() as ({ type: 'text' } & Record<string, unknown>) | (AttachmentStream & { type: 'attachment' }) | null;
      if (data === null) {
        reading = false;
        return;
      }
      if (data.type === 'text') {
        for (const key of Object.keys(data)) if (['text', 'html', 'textAsHtml', 'textConversionError'].includes(key)) mail[key] = data[key];
      }
      if (data.type === 'attachment') {
        const attachment = data;
        const content = attachment.content;
        const start = used;
        content.on('readable', () => {
          let chunk: Buffer | null;
          while ((chunk = content.read() as Buffer | null) !== null) {
            arena ??= Buffer.allocUnsafe(Math.ceil(size * BASE64_SHARE) + 1024);
            // Parts that are not base64 may need more, up to the message's size, which is enough for
            // anything: the arena grows once (views made before keep pointing into the old one, unchanged).
            if (used + chunk.length > arena.length) {
              const grown = Buffer.allocUnsafe(Math.max(size, used + chunk.length));
              arena.copy(grown, 0, 0, used);
              arena = grown;
            }
            chunk.copy(arena, used);
            used += chunk.length;
          }
        });
        content.on('end', () => {
          (attachment as unknown as Attachment).content = arena ? arena.subarray(start, used) : Buffer.alloc(0);
          mail.attachments.push(attachment as unknown as Attachment);
          attachment.release?.();
          reader();
        });
      } else {
        reader();
      }
    };
    parser.on('readable', () => {
      if (!reading) reader();
    });
    parser.on('end', () => {
      for (const key of ['subject', 'references', 'date', 'to', 'from', 'to', 'cc', 'bcc', 'message-id', 'in-reply-to', 'reply-to']) {
        if (mail.headers && (mail.headers as Map<string, unknown>).has(key)) mail[key.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase())] = (mail.headers as Map<string, unknown>).get(key);
      }
      settle(null, mail as unknown as ParsedMail);
    });
    input.once('error', (err: Error) => {
      input.destroy();
      parser.destroy();
      settle(err);
    });
    input.pipe(parser);
  });
}
