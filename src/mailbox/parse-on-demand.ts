// parseMessage (parse.ts) with the parser loaded on the first message. The parser's libraries (mailparser,
// postal-mime, mailsplit, libmime with iconv-lite's double-byte tables) keep about 5 MB of heap and add 12-14 MB
// to a process's resident size once loaded; a `juniper worker` that only sends, or a `serve` that never
// fetches, does not need them. The result is parse.ts's own: only the first call waits for the import.
import type { ParseOutcome, parseMessage as parseNow } from './parse.js';

let parser: Promise<{ parseMessage: typeof parseNow }> | undefined;

/** parse.ts's parseMessage (never rejects once the module is loaded). */
export async function parseMessage(raw: Buffer): Promise<ParseOutcome> {
  return (await (parser ??= import('./parse.js'))).parseMessage(raw);
}
