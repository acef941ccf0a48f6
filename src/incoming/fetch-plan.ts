// Decisions of the fetch loop, without I/O: where a cursor starts, and how the pending UIDs are cut into
// batches (by count and bytes, with messages over the size cap apart, fetched as headers only).

export interface StoredCursor {
  uidvalidity: number | null;
  lastUid: number | null;
  seenUid: number | null;
}

export type CursorStart =
  /** Go on from the stored cursor; `seenUid` below `lastUid` is a gap of stored but unmarked messages. */
  | { kind: 'continue'; lastUid: number; seenUid: number }
  /** No cursor for this UIDVALIDITY: the first fetch, or the folder's UIDs changed meaning (`reset`). */
  | { kind: 'first' | 'reset' };

export function cursorStart(cursor: StoredCursor, uidValidity: number): CursorStart {
  if (cursor.uidvalidity === uidValidity && cursor.lastUid !== null) {
    return { kind: 'continue', lastUid: cursor.lastUid, seenUid: Math.min(cursor.seenUid ?? cursor.lastUid, cursor.lastUid) };
  }
  return { kind: cursor.uidvalidity === null ? 'first' : 'reset' };
}

/**
 * The cursor of a new start (first fetch or UIDVALIDITY reset alike): just below the oldest unseen message, or
 * at the end of the folder when everything is read. A restored folder with ten years of read mail is not
 * imported again; what is unseen in it is, and dedupe skips what was stored before.
 */
export function newStartUid(firstUnseen: number | undefined, uidNext: number): number {
  return Math.max((firstUnseen ?? uidNext) - 1, 0);
}

export interface Batch {
  uids: number[];
  /** Over the size cap: fetch only the header section. */
  oversize: boolean;
}

/**
 * Splits ascending UIDs into batches of at most `size` messages and about `bytes` bytes (one message always
 * fits). Messages larger than `maxMessageBytes` go into batches of their own (up to `size` of them), which
 * fetch their header sections only.
 */
export function batches(pending: readonly { uid: number; size: number }[], size: number, bytes: number, maxMessageBytes = Infinity): Batch[] {
  const out: Batch[] = [];
  let current: Batch | undefined;
  let currentBytes = 0;
  for (const m of pending) {
    const oversize = m.size > maxMessageBytes;
    const cost = oversize ? 0 : m.size;
    if (current && (current.oversize !== oversize || current.uids.length >= size || currentBytes + cost > bytes)) {
      out.push(current);
      current = undefined;
    }
    if (!current) {
      current = { uids: [], oversize };
      currentBytes = 0;
    }
    current.uids.push(m.uid);
    currentBytes += cost;
  }
  if (current) out.push(current);
  return out;
}

/**
 * The batches of a run after one that never finished a FETCH of UIDs up to `aloneThrough`: those messages
 * one FETCH each, so the one that breaks the run (a dropped connection, a crash) is found and fails alone, and
 * the good ones of its batch are stored; the rest in batches as usual.
 */
export function batchesAfterFailure(pending: readonly { uid: number; size: number }[], aloneThrough: number | null, size: number, bytes: number, maxMessageBytes = Infinity): Batch[] {
  if (aloneThrough === null) return batches(pending, size, bytes, maxMessageBytes);
  const alone = pending.filter((m) => m.uid <= aloneThrough);
  return [...alone.map((m) => ({ uids: [m.uid], oversize: m.size > maxMessageBytes })), ...batches(pending.slice(alone.length), size, bytes, maxMessageBytes)];
}
