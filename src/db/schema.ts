// Table types for Kysely. Conventions, the same on SQLite and PostgreSQL:
// - times are epoch milliseconds in bigint columns (read back as numbers on both dialects);
// - booleans are integers 0/1 (SQLite has no boolean type; one representation keeps queries portable);
// - secrets are stored only as vault ciphertext strings (columns named *_enc).
import type { Generated, Insertable, Selectable, Updateable } from 'kysely';

export interface ParametersTable {
  key: string;
  value: string;
  updated_at: number;
}

export interface SettingsTable {
  key: string;
  /** JSON text; secret settings hold a JSON string of vault ciphertext. */
  value: string;
  updated_at: number;
}

export type Role = 'admin' | 'user';

export interface UsersTable {
  id: Generated<number>;
  /** Stored lower-case; unique. */
  login: string;
  email: string;
  name: string;
  password_hash: string | null;
  role: Role;
  active: number;
  created_at: number;
  updated_at: number;
}

export interface SessionsTable {
  /** SHA-256 of the cookie token: a stolen database does not hand out live sessions. */
  id: string;
  user_id: number;
  csrf_token: string;
  created_at: number;
  expires_at: number;
  last_seen_at: number;
}

export interface ApiKeysTable {
  id: Generated<number>;
  user_id: number;
  name: string;
  /** The first characters of the key, shown in lists so a key can be recognised without revealing it. */
  prefix: string;
  key_hash: string;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

export interface AuditLogTable {
  id: Generated<number>;
  at: number;
  actor_user_id: number | null;
  /** Who acted: a login, or `cli` for the command line. */
  actor: string;
  action: string;
  target: string;
  /** JSON; never holds secret values. */
  details: string | null;
}

export type Security = 'none' | 'starttls' | 'ssl';
export type OutgoingAuth = 'none' | 'password' | 'outlook';
export type TokenStatus = 'missing' | 'valid' | 'needs_reconnect';

/** One consent of one server (src/oauth/connections.ts): its refresh token, account, status and refresh lease. */
export interface OAuthConnectionsTable {
  id: Generated<number>;
  server_kind: 'outgoing' | 'incoming';
  server_id: number;
  provider: Generated<string>;
  account: string | null;
  refresh_token_enc: string | null;
  status: 'valid' | 'needs_reconnect';
  error_code: string | null;
  error_message: string | null;
  refreshed_at: number | null;
  /** Database-level single-flight guard for refreshes across worker processes. */
  lock_until: number | null;
  /** Who holds that guard: only the holder may release it (a late release must not free another's lock). */
  lock_owner: string | null;
  created_at: number;
}

/** A connection's access token for one resource (Entra ID issues one resource per token). */
export interface OAuthAccessTokensTable {
  id: Generated<number>;
  connection_id: number;
  resource: 'outlook' | 'graph';
  access_token_enc: string;
  expires_at: number;
}

/**
 * A server's OAuth connection as the server services read it with the server (oauth/connections.ts
 * withTokenSummary): 'missing' when there is none; the expiry is the Outlook resource's token's.
 */
export interface TokenSummary {
  token_status: TokenStatus;
  token_account: string | null;
  token_error_code: string | null;
  token_error_message: string | null;
  access_token_expires_at: number | null;
}

export interface OutgoingServersTable {
  id: Generated<number>;
  name: string;
  host: string;
  port: number;
  security: Security;
  auth: OutgoingAuth;
  username: string | null;
  password_enc: string | null;
  from_filter: string | null;
  priority: Generated<number>;
  active: Generated<number>;
  allow_self_signed: Generated<number>;
  owner_user_id: number | null;
  last_test_at: number | null;
  last_test_ok: number | null;
  last_test_message: string | null;
  archived_at: number | null;
  /** Its Active setting when it was archived (1/0), so Restore brings that back; null when not archived (migration 031). */
  active_before_archive: number | null;
  /** Connections the server's pool keeps; null = the default for its kind (server-rules.ts). */
  pool_size: number | null;
  /** Mails a minute at most; 0 = no limit, null = the default for its kind (30 for Outlook, none else). */
  rate_per_minute: number | null;
  /** How mail leaves an Outlook server: SMTP, Microsoft Graph, or SMTP until Microsoft refuses SMTP AUTH (auto). */
  transport: Generated<'smtp' | 'graph' | 'auto'>;
  /** When an auto server moved to Graph, and Microsoft's words that made it (null while it uses SMTP). */
  transport_switched_at: number | null;
  transport_switch_reason: string | null;
  /** Graph only: keep a copy in the mailbox's Sent Items. */
  save_to_sent_items: Generated<number>;
  created_at: number;
  updated_at: number;
}

/** The first answer to a POST /api/v1/mails that carried an Idempotency-Key, kept at least 24 h. */
export interface IdempotencyKeysTable {
  user_id: number;
  key: string;
  /** SHA-256 of the request body: the same key with another body is refused (422). */
  request_sha256: string;
  status: number;
  response: string;
  created_at: number;
}

export interface BlobsTable {
  sha256: string;
  size: number;
  content: Buffer;
  created_at: number;
}

export type MailState = 'queued' | 'sending' | 'sent' | 'failed' | 'cancelled';

export interface OutgoingMailsTable {
  id: Generated<number>;
  message_id: string;
  from_header: string;
  /** JSON arrays of address strings. */
  to_addrs: string;
  cc_addrs: string;
  bcc_addrs: string;
  reply_to: string | null;
  subject: string;
  text_body: string | null;
  html_body: string | null;
  /** JSON object of extra headers. */
  headers: string | null;
  raw_sha256: string | null;
  forced_server_id: number | null;
  mass_mailing: Generated<number>;
  state: MailState;
  attempts: Generated<number>;
  next_attempt_at: number;
  lease_owner: string | null;
  lease_expires_at: number | null;
  waiting_reason: string | null;
  failure_type: string | null;
  failure_reason: string | null;
  server_id: number | null;
  effective_from: string | null;
  envelope_from: string | null;
  smtp_response: string | null;
  /** JSON array of { address, response } for recipients the server refused while others were accepted. */
  rejected_recipients: string | null;
  sent_at: number | null;
  /** The owner name (`host:pid:random`) of the worker that recorded the mail sent (migration 011). */
  sent_by: string | null;
  created_by_user_id: number | null;
  /** Set when a delivery-status report or a mail to the bounce address names this mail; the state stays as it was. */
  bounced_at: number | null;
  bounce_reason: string | null;
  /** Claims whose lease expired without an outcome (the worker stopped): a mail that keeps doing that fails as `crashed`. */
  lost_leases: Generated<number>;
  /** The last manual retry: a waiting mail's maximum age counts from here (else from created_at). */
  retried_at: number | null;
  /**
   * A follow-up mail's recipients (JSON array of addresses): those its original deferred with a 4xx at RCPT TO
   * (partial-delivery.ts). Null on every other mail: the envelope is all of to, cc and bcc. Migration 025.
   */
  envelope_to: string | null;
  /** The mail a follow-up delivers the rest of (set null when retention deletes that one). Migration 025. */
  follow_up_of: number | null;
  created_at: number;
  updated_at: number;
}

export interface OutgoingAttachmentsTable {
  id: Generated<number>;
  mail_id: number;
  position: number;
  filename: string;
  content_type: string;
  content_id: string | null;
  blob_sha256: string;
}

export interface OAuthStatesTable {
  /** SHA-256 of the state parameter. */
  id: string;
  user_id: number;
  session_id: string | null;
  server_kind: 'outgoing' | 'incoming';
  server_id: number;
  code_verifier_enc: string;
  redirect_uri: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  /** What of the server the sign-in is for, as server-binding.ts writes it; null for sign-ins from before 033. */
  server_binding: string | null;
}

export type IncomingAuth = 'password' | 'outlook';
export type IncomingState = 'draft' | 'confirmed';

export interface IncomingServersTable {
  id: Generated<number>;
  name: string;
  protocol: Generated<'imap'>;
  host: string;
  port: number;
  security: Security;
  auth: IncomingAuth;
  username: string | null;
  password_enc: string | null;
  folder: Generated<string>;
  keep_original: Generated<number>;
  keep_attachments: Generated<number>;
  state: Generated<IncomingState>;
  priority: Generated<number>;
  active: Generated<number>;
  interval_minutes: Generated<number>;
  allow_self_signed: Generated<number>;
  owner_user_id: number | null;
  /** The folder's UIDVALIDITY the cursor belongs to; a different one means every UID changed meaning. */
  cursor_uidvalidity: number | null;
  /** Highest UID stored (or skipped as a duplicate, or quarantined); the next fetch starts after it. */
  cursor_last_uid: number | null;
  /** Highest UID marked \Seen; below cursor_last_uid after a crash between commit and STORE. */
  cursor_seen_uid: number | null;
  /** The UID the last runs stopped before: listed by the server but not returned (null when none). */
  unreturned_uid: number | null;
  /** How many runs in a row stopped before unreturned_uid; at UNRETURNED_SKIP_AFTER_RUNS it is skipped. */
  unreturned_runs: Generated<number>;
  /**
   * The first UID of the FETCH in flight or of the last one that never finished (noted before it is sent;
   * null when none): a run that died with its process leaves it behind for the next run to find.
   */
  attempt_first_uid: number | null;
  /** The last UID of that FETCH: up to here the next run fetches one message at a time. */
  attempt_last_uid: number | null;
  /**
   * How many runs in a row failed with attempt_first_uid fetched alone (0 for a FETCH of several); at
   * FAILED_FETCH_SKIP_AFTER_RUNS it is skipped with a placeholder in quarantine.
   */
  attempt_failed_runs: Generated<number>;
  last_fetch_at: number | null;
  last_error: string | null;
  /** When the current run of failures started (null while fetching works). */
  error_since: number | null;
  fetch_lease_owner: string | null;
  fetch_lease_until: number | null;
  last_test_at: number | null;
  last_test_ok: number | null;
  last_test_message: string | null;
  archived_at: number | null;
  /** Its Active setting when it was archived (1/0), so Restore brings that back; null when not archived (migration 031). */
  active_before_archive: number | null;
  created_at: number;
  updated_at: number;
}

export interface ThreadsTable {
  id: Generated<number>;
  subject: string;
  last_message_at: number;
  created_at: number;
}

export interface MessagesTable {
  id: Generated<number>;
  server_id: number | null;
  direction: 'in' | 'out';
  outgoing_mail_id: number | null;
  /**
   * `mid:<hex>`: SHA-256 of the normalised Message-ID; `sha256:<hex>` of the raw bytes when there is none (or
   * for a quarantined message); `oversize:<hex of the headers>:<size>` for one over the size cap. Unique per server.
   */
  dedupe_key: string;
  message_id: string | null;
  in_reply_to: string | null;
  /** JSON array of Message-IDs. */
  references_ids: string | null;
  thread_id: number | null;
  /** The alias local part when addressed to <alias>@<mail.catchall.domain>. */
  mailbox: string | null;
  from_header: string | null;
  /** JSON arrays of address strings. */
  to_addrs: string;
  cc_addrs: string;
  subject: string;
  /** The Date header, epoch ms. */
  sent_at: number | null;
  text_body: string | null;
  html_body: string | null;
  raw_sha256: string | null;
  size: number;
  quarantined: Generated<number>;
  parse_error: string | null;
  is_bounce: Generated<number>;
  bounced_mail_id: number | null;
  uid: number | null;
  uidvalidity: number | null;
  created_at: number;
}

export interface MessageAttachmentsTable {
  id: Generated<number>;
  message_id: number;
  position: number;
  filename: string;
  content_type: string;
  content_id: string | null;
  size: number;
  blob_sha256: string | null;
}

/** An attempt that did not deliver (017): the mail page's history. */
export interface MailAttemptsTable {
  id: Generated<number>;
  mail_id: number;
  at: number;
  outcome: 'retry' | 'failed';
  server_id: number | null;
  failure_type: string | null;
  reason: string | null;
}

export interface DB {
  parameters: ParametersTable;
  settings: SettingsTable;
  users: UsersTable;
  sessions: SessionsTable;
  api_keys: ApiKeysTable;
  audit_log: AuditLogTable;
  outgoing_servers: OutgoingServersTable;
  blobs: BlobsTable;
  outgoing_mails: OutgoingMailsTable;
  outgoing_attachments: OutgoingAttachmentsTable;
  idempotency_keys: IdempotencyKeysTable;
  mail_attempts: MailAttemptsTable;
  oauth_states: OAuthStatesTable;
  oauth_connections: OAuthConnectionsTable;
  oauth_access_tokens: OAuthAccessTokensTable;
  incoming_servers: IncomingServersTable;
  threads: ThreadsTable;
  messages: MessagesTable;
  message_attachments: MessageAttachmentsTable;
}

export type User = Selectable<UsersTable>;
export type NewUser = Insertable<UsersTable>;
export type UserUpdate = Updateable<UsersTable>;
export type Session = Selectable<SessionsTable>;
export type ApiKey = Selectable<ApiKeysTable>;
export type AuditEntry = Selectable<AuditLogTable>;
export type OutgoingServerRow = Selectable<OutgoingServersTable>;
export type OutgoingServer = OutgoingServerRow & TokenSummary;
export type OutgoingMail = Selectable<OutgoingMailsTable>;
export type MailAttempt = Selectable<MailAttemptsTable>;
export type IncomingServerRow = Selectable<IncomingServersTable>;
export type IncomingServer = IncomingServerRow & TokenSummary;
export type Message = Selectable<MessagesTable>;
export type Thread = Selectable<ThreadsTable>;
export type MessageAttachment = Selectable<MessageAttachmentsTable>;
