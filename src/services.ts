// The services the composition root (app.ts) builds. A type of its own, so the HTTP plugins and pages
// can name the few services they use without importing app.ts (which builds them).
import type { AuditLog } from './audit/audit-log.js';
import type { IncomingMail } from './incoming/incoming-mail.js';
import type { FetchState } from './incoming/fetch-state.js';
import type { IncomingServers } from './incoming/servers.js';
import type { BlobStore } from './mailbox/blob-store.js';
import type { MessageStore } from './mailbox/messages.js';
import type { OAuthAppStatus } from './oauth/app-status.js';
import type { OutlookConnect } from './oauth/outlook-connect.js';
import type { TokenStore } from './oauth/token-store.js';
import type { Outbox } from './outgoing/outbox.js';
import type { OutgoingQueue } from './outgoing/queue.js';
import type { OutgoingServers } from './outgoing/servers.js';
import type { Parameters } from './settings/parameters.js';
import type { Settings } from './settings/settings.js';
import type { ApiKeys } from './users/api-keys.js';
import type { FirstRunSetup } from './users/first-run.js';
import type { Sessions } from './users/sessions.js';
import type { SignIn } from './users/sign-in.js';
import type { Users } from './users/users.js';

export interface Services {
  audit: AuditLog;
  users: Users;
  sessions: Sessions;
  apiKeys: ApiKeys;
  signIn: SignIn;
  firstRun: FirstRunSetup;
  parameters: Parameters;
  settings: Settings;
  outgoingServers: OutgoingServers;
  blobs: BlobStore;
  queue: OutgoingQueue;
  outbox: Outbox;
  /** OAuth access tokens for Outlook servers (the SMTP and IMAP adapters ask it as their TokenProvider). */
  tokens: TokenStore;
  oauthAppStatus: OAuthAppStatus;
  outlookConnect: OutlookConnect;
  incomingServers: IncomingServers;
  /** Fetch lease, UID cursor and last outcome per incoming server. */
  fetchState: FetchState;
  /** Test & Confirm and fetching (reads `tokens` when used). */
  incoming: IncomingMail;
  messages: MessageStore;
}
