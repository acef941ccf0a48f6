// What makes two fetched messages "the same" (so the second is not stored), and the header section a
// quarantine row keeps when the whole message cannot be. Keys are hashes, never the Message-ID itself: a
// Message-ID is sender-controlled text of any length, and a PostgreSQL btree entry may not exceed ~2.7 KB, so a
// key made of the raw value let one hostile message fail its insert for good and block its mailbox.
import { sha256Of } from './blob-store.js';

/** The Message-ID as compared for duplicates: without the whitespace folding may leave inside it, in <>. */
export function normaliseMessageId(messageId: string): string {
  const bare = messageId.replace(/\s+/g, '').replace(/^<+|>+$/g, '');
  return `<${bare}>`;
}

/** The dedupe key of a message: `mid:` + SHA-256 of its normalised Message-ID, else `sha256:` + SHA-256 of its bytes. */
export function dedupeKeyOf(messageId: string | null, raw: Buffer): string {
  return messageId && messageId.trim() !== '' && normaliseMessageId(messageId) !== '<>' ? messageIdKey(messageId) : rawKey(raw);
}

export function messageIdKey(messageId: string): string {
  return `mid:${sha256Of(Buffer.from(normaliseMessageId(messageId), 'utf8'))}`;
}

/** The same bytes fetched again (a UIDVALIDITY reset re-imports them) are the same message, stored or quarantined. */
export function rawKey(raw: Buffer): string {
  return `sha256:${sha256Of(raw)}`;
}

/** An oversize message, known only by its header section and its size. */
export function oversizeKey(headers: Buffer, size: number): string {
  return `oversize:${sha256Of(headers)}:${size}`;
}

/** What a quarantine row shows of the headers (subject, from, to) is read from at most this much. */
export const QUARANTINE_HEADER_BYTES = 64 * 1024;

/** The header section of raw message bytes (up to and including the blank line), at most `limit` bytes. */
export function headerSection(raw: Buffer, limit: number): Buffer {
  const crlf = raw.indexOf('\r\n\r\n');
  const lf = raw.indexOf('\n\n');
  const ends = [crlf === -1 ? -1 : crlf + 4, lf === -1 ? -1 : lf + 2].filter((n) => n > 0);
  const end = ends.length ? Math.min(...ends) : raw.length;
  return raw.subarray(0, Math.min(end, limit));
}

/** Text safe for any database text column: no NUL (PostgreSQL refuses it), at most `max` characters. */
export function storableText(value: string, max: number): string {
  const clean = value.includes('\u0000') ? value.split('\u0000').join('') : value;
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}
