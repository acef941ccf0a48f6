// The seam between the fetch loop and IMAP: the few things fetching needs from a mailbox, by UID. The
// imapflow adapter (imap-reader.ts) implements it; tests wrap it to fail at a chosen moment.
export interface ImapEndpoint {
  serverId: number;
  name: string;
  host: string;
  port: number;
  security: 'none' | 'starttls' | 'ssl';
  allowSelfSigned: boolean;
  /** The checked address to open the socket to instead of `host` (host-guard.ts); TLS still verifies `host`. */
  connectAddress?: string;
  /**
   * The incoming size cap: the IMAP parser refuses any literal or response beyond it (plus framing), so a server
   * that announces a small size and then streams gigabytes cannot exhaust the worker's memory.
   */
  maxMessageBytes?: number;
}

export type ImapCredentials = { kind: 'password'; user: string; pass: string } | { kind: 'oauth2'; user: string; accessToken: string };

export interface FolderStatus {
  /** UIDVALIDITY: UIDs mean the same messages only while this stays the same. */
  uidValidity: number;
  /** The UID the next message will get. */
  uidNext: number;
  exists: number;
}

export interface FetchedMessage {
  uid: number;
  source: Buffer;
}

export interface FetchedHeaders {
  uid: number;
  /** The header section (BODY.PEEK[HEADER]), at most `maxBytes` of it. */
  headers: Buffer;
}

export interface MailboxReader {
  /** Selects the folder (read-write: Juniper sets \Seen). */
  open(folder: string): Promise<FolderStatus>;
  /**
   * UIDs above `afterUid`, ascending, each with its size: exact for a message larger than `exactAbove`; a
   * smaller one's is given as `exactAbove` (a bound, which is all batching needs).
   */
  listAfter(afterUid: number, exactAbove: number): Promise<{ uid: number; size: number }[]>;
  /** The lowest UID without \Seen, if any. */
  firstUnseen(): Promise<number | undefined>;
  /**
   * The messages' bytes, ascending by UID, without setting \Seen (BODY.PEEK). Expunged ones are left out.
   */
  fetch(uids: number[]): AsyncIterable<FetchedMessage>;
  /** Only the header sections (messages over the size cap), at most `maxBytes` each, without setting \Seen. */
  fetchHeaders(uids: number[], maxBytes: number): AsyncIterable<FetchedHeaders>;
  markSeen(uids: number[]): Promise<void>;
  close(): Promise<void>;
}

export interface ConnectOptions {
  /**
   * The run's stop: once it fires, the step in progress fails with FetchStopped (fetch-stopped.ts) and the
   * connection is closed, whatever the server does; no other step is sent.
   */
  signal?: AbortSignal;
}

export type ConnectReader = (endpoint: ImapEndpoint, credentials: ImapCredentials, options?: ConnectOptions) => Promise<MailboxReader>;

/** A compact IMAP sequence set for ascending UIDs: 1,2,3,7,9,10 → "1:3,7,9:10". */
export function uidSet(uids: readonly number[]): string {
  const sorted = [...new Set(uids)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? String(sorted[i]) : `${sorted[i]}:${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
