// Reading stored messages and threads, always through who is asking: admins see everything; a user sees the
// messages of incoming servers they own and the mails they sent themselves. Anything else does not exist
// for them (404, not 403: ids must not reveal what other mailboxes hold).
import { sql, type ExpressionBuilder, type Kysely, type SelectQueryBuilder } from 'kysely';
import type { DB, Message, MessageAttachment } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import type { BlobStore } from './blob-store.js';

export interface Viewer {
  userId: number;
  admin: boolean;
}

export interface MessageSummary {
  id: number;
  serverId: number | null;
  direction: 'in' | 'out';
  outgoingMailId: number | null;
  threadId: number | null;
  mailbox: string | null;
  messageId: string | null;
  from: string | null;
  to: string[];
  cc: string[];
  subject: string;
  date: string | null;
  size: number;
  quarantined: boolean;
  isBounce: boolean;
  bouncedMailId: number | null;
  createdAt: string;
}

export interface AttachmentView {
  id: number;
  filename: string;
  contentType: string;
  contentId: string | null;
  size: number;
  /** Null when the server does not keep attachments. */
  url: string | null;
}

export interface MessageDetail extends MessageSummary {
  inReplyTo: string | null;
  references: string[];
  text: string | null;
  html: string | null;
  parseError: string | null;
  attachments: AttachmentView[];
  /** The original .eml, when kept (keep original, quarantine, or a raw mail Juniper sent). */
  rawUrl: string | null;
}

export interface ThreadView {
  id: number;
  subject: string;
  messageCount: number;
  lastMessageAt: string;
  createdAt: string;
}

export interface MessageFilter {
  serverId?: number;
  threadId?: number;
  mailbox?: string;
  quarantined?: boolean;
  /** Words the subject, the sender or the text body contains (case-insensitive). */
  search?: string;
  /** Only received ('in') or only sent ('out') messages; both when absent. */
  direction?: 'in' | 'out';
  after?: number;
  /** Only ids below this (paging newest first). */
  before?: number;
  /** Newest first (the Inbox page) instead of oldest first (the API's paging with `after`). */
  newestFirst?: boolean;
  limit?: number;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function messageSummary(m: Message): MessageSummary {
  return {
    id: m.id,
    serverId: m.server_id,
    direction: m.direction,
    outgoingMailId: m.outgoing_mail_id,
    threadId: m.thread_id,
    mailbox: m.mailbox,
    messageId: m.message_id,
    from: m.from_header,
    to: JSON.parse(m.to_addrs) as string[],
    cc: JSON.parse(m.cc_addrs) as string[],
    subject: m.subject,
    date: iso(m.sent_at),
    size: m.size,
    quarantined: m.quarantined === 1,
    isBounce: m.is_bounce === 1,
    bouncedMailId: m.bounced_mail_id,
    createdAt: iso(m.created_at)!,
  };
}

type MessagesQuery = SelectQueryBuilder<DB & { m: DB['messages'] }, 'm', object>;

/** The visibility rule as a WHERE clause on `messages as m`. */
function visibleTo(viewer: Viewer) {
  return (eb: ExpressionBuilder<DB & { m: DB['messages'] }, 'm'>) =>
    eb.or([
      eb('m.server_id', 'in', eb.selectFrom('incoming_servers').select('id').where('owner_user_id', '=', viewer.userId)),
      eb.and([eb('m.direction', '=', 'out'), eb('m.outgoing_mail_id', 'in', eb.selectFrom('outgoing_mails').select('id').where('created_by_user_id', '=', viewer.userId))]),
    ]);
}

export class MessageStore {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly blobs: BlobStore,
  ) {}

  private scoped(viewer: Viewer): MessagesQuery {
    const q = this.db.selectFrom('messages as m') as MessagesQuery;
    return viewer.admin ? q : q.where(visibleTo(viewer));
  }

  /** Oldest first (page with `after` = the last id seen), or newest first (page with `before`). */
  async list(viewer: Viewer, filter: MessageFilter = {}): Promise<Message[]> {
    let q = this.scoped(viewer).selectAll('m').orderBy('m.id', filter.newestFirst ? 'desc' : 'asc').limit(Math.min(filter.limit ?? 100, 1000));
    if (filter.serverId !== undefined) q = q.where('m.server_id', '=', filter.serverId);
    if (filter.threadId !== undefined) q = q.where('m.thread_id', '=', filter.threadId);
    if (filter.mailbox !== undefined) q = q.where('m.mailbox', '=', filter.mailbox.toLowerCase());
    if (filter.quarantined !== undefined) q = q.where('m.quarantined', '=', filter.quarantined ? 1 : 0);
    if (filter.direction !== undefined) q = q.where('m.direction', '=', filter.direction);
    if (filter.search !== undefined && filter.search.trim() !== '') {
      // LIKE with its wildcards escaped, on lower() of both sides: the same on SQLite and PostgreSQL.
      const pattern = `%${filter.search.trim().toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      q = q.where((eb) =>
        eb.or(
          (['m.subject', 'm.from_header', 'm.text_body'] as const).map((col) => eb(eb.fn('lower', [col]), 'like', sql<string>`${pattern} escape '\\'`)),
        ),
      );
    }
    if (filter.after !== undefined) q = q.where('m.id', '>', filter.after);
    if (filter.before !== undefined) q = q.where('m.id', '<', filter.before);
    return q.execute();
  }

  async get(viewer: Viewer, id: number): Promise<Message> {
    const row = await this.scoped(viewer).selectAll('m').where('m.id', '=', id).executeTakeFirst();
    if (!row) throw new AppError('JUNIPER_ERR_NOT_FOUND', `No message with id ${id}.`);
    return row;
  }

  async detail(viewer: Viewer, id: number): Promise<MessageDetail> {
    const m = await this.get(viewer, id);
    const attachments = await this.db.selectFrom('message_attachments').selectAll().where('message_id', '=', id).orderBy('position').execute();
    return {
      ...messageSummary(m),
      inReplyTo: m.in_reply_to,
      references: m.references_ids ? (JSON.parse(m.references_ids) as string[]) : [],
      text: m.text_body,
      html: m.html_body,
      parseError: m.parse_error,
      attachments: attachments.map((a) => attachmentView(m.id, a)),
      rawUrl: m.raw_sha256 ? `/api/v1/messages/${m.id}/raw` : null,
    };
  }

  async raw(viewer: Viewer, id: number): Promise<Buffer> {
    const m = await this.get(viewer, id);
    if (!m.raw_sha256) throw new AppError('JUNIPER_ERR_NOT_FOUND', `Message ${id} has no original kept: turn on "keep original" on its server to keep the next ones.`);
    return this.blobs.get(m.raw_sha256);
  }

  async attachment(viewer: Viewer, id: number, attachmentId: number): Promise<{ filename: string; contentType: string; content: Buffer }> {
    await this.get(viewer, id);
    const a = await this.db.selectFrom('message_attachments').selectAll().where('message_id', '=', id).where('id', '=', attachmentId).executeTakeFirst();
    if (!a) throw new AppError('JUNIPER_ERR_NOT_FOUND', `Message ${id} has no attachment ${attachmentId}.`);
    if (!a.blob_sha256) throw new AppError('JUNIPER_ERR_NOT_FOUND', `The attachment ${a.filename} was not kept: its server does not keep attachments.`);
    return { filename: a.filename, contentType: a.content_type, content: await this.blobs.get(a.blob_sha256) };
  }

  /** Threads with at least one message the viewer may see, most recent first; counts only what they may see. */
  async threads(viewer: Viewer, filter: { limit?: number; serverId?: number } = {}): Promise<ThreadView[]> {
    let visible = this.scoped(viewer).select(['m.thread_id', sql<number>`count(*)`.as('n')]).where('m.thread_id', 'is not', null).groupBy('m.thread_id');
    // Threads with a message of that server the viewer may see: not one of anyone's (that would tell whether a
    // server they cannot see holds messages of their threads).
    if (filter.serverId !== undefined) visible = visible.where('m.thread_id', 'in', this.scoped(viewer).select('m.thread_id').where('m.server_id', '=', filter.serverId));
    const rows = await this.db
      .selectFrom('threads as t')
      .innerJoin(visible.as('v'), 'v.thread_id', 't.id')
      .select(['t.id', 't.subject', 't.last_message_at', 't.created_at', 'v.n'])
      .orderBy('t.last_message_at', 'desc')
      .orderBy('t.id', 'desc')
      .limit(Math.min(filter.limit ?? 100, 1000))
      .execute();
    return rows.map((r) => ({ id: r.id, subject: r.subject, messageCount: Number(r.n), lastMessageAt: iso(r.last_message_at)!, createdAt: iso(r.created_at)! }));
  }
}

function attachmentView(messageId: number, a: MessageAttachment): AttachmentView {
  return {
    id: a.id,
    filename: a.filename,
    contentType: a.content_type,
    contentId: a.content_id,
    size: a.size,
    url: a.blob_sha256 ? `/api/v1/messages/${messageId}/attachments/${a.id}` : null,
  };
}
