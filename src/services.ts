// The services of one app: every domain service, built once over one database and vault. `Services` is
// their type: HTTP plugins and pages name the few they use (Pick<Services, …>) without importing app.ts.
import type { Database } from './db/database.js';
import type { WakeChannel } from './db/wake-channel.js';
import { AuditLog } from './audit/audit-log.js';
import type { Logger } from './lib/logger.js';
import { ApiKeys } from './users/api-keys.js';
import { FirstRunSetup } from './users/first-run.js';
import { Sessions } from './users/sessions.js';
import { SignIn } from './users/sign-in.js';
import { Users } from './users/users.js';
import type { Vault } from './vault/index.js';
import { Parameters, SNAPSHOT_TTL_MS } from './settings/parameters.js';
import { Settings } from './settings/settings.js';
import { BlobStore } from './mailbox/blob-store.js';
import { Outbox } from './outgoing/outbox.js';
import { OutgoingQueue } from './outgoing/queue.js';
import { OutgoingServers } from './outgoing/servers.js';
import { HostGuard, type HostResolver } from './mail-servers/host-guard.js';
import { IncomingMail } from './incoming/incoming-mail.js';
import { FetchState } from './incoming/fetch-state.js';
import { incomingKind } from './incoming/servers.js';
import { MailServers } from './mail-servers/mail-servers.js';
import { Ingest } from './mailbox/ingest.js';
import { MessageStore } from './mailbox/messages.js';
import { OAuthAppStatus } from './oauth/app-status.js';
import { OutlookConnect } from './oauth/outlook-connect.js';
import { TokenStore } from './oauth/token-store.js';
import { Readiness } from './jobs/readiness.js';
import { MetricsScraper } from './metrics/scrape.js';
import { JobStore } from './jobs/job-store.js';
import { FetchJobs } from './jobs/fetch-jobs.js';
import { Webhooks } from './webhooks/webhooks.js';

export type Services = ReturnType<typeof buildServices>;

const MASS_MAILING_WAIT = 'mass_mailing_server_unavailable';

export function buildServices({ database, vault, logger, wake, resolveHost, fetchLeaseMs, fetchBatchSize }: { database: Database; vault: Vault; logger: Logger; wake: WakeChannel; resolveHost?: HostResolver | undefined; fetchLeaseMs: number; fetchBatchSize?: number }) {
  const { db } = database;
  const audit = new AuditLog(db);
  const apiKeys = new ApiKeys(db, audit);
  const users = new Users(db, audit, () => apiKeys.forgetVerified());
  const parameters = new Parameters(db, audit);
  const blobs = new BlobStore(db);
  const queue = new OutgoingQueue(db, database.dialect, blobs);
  const hostGuard = new HostGuard(db, resolveHost);
  const incomingServers = new MailServers(db, vault, audit, incomingKind, hostGuard);
  const fetchState = new FetchState(db, incomingServers);
  // Mass mailings waiting for their dedicated server (archived or inactive, failure type
  // mass_mailing_server_unavailable) go out as soon as it is restored or made active, not at their next recheck.
  // A wake-up only saves the mails' wait: one that fails (a busy database) must not turn the change that
  // committed before it into an error for the person who made it. The mails go out at their recheck anyway.
  const wakeQuietly = (what: string, wake: () => Promise<void>) => async () => {
    try {
      await wake();
    } catch (err) {
      logger.warn({ err, op: 'queue.wake', what }, `could not release the mails waiting for ${what} at once; they go out at their next recheck`);
    }
  };
  const outgoingServers = new OutgoingServers(db, vault, audit, hostGuard, {
    onUsableAgain: async (server) =>
      wakeQuietly('their mass-mailing server', async () => {
        if ((await queue.wakeWaitingFor(MASS_MAILING_WAIT, { serverId: server.id })) > 0) outbox.wake();
      })(),
  });
  const outbox = new Outbox(queue, parameters, outgoingServers, () => wake.notify());
  // Mails waiting for an Outlook app problem go out as soon as new app credentials are saved, as a reconnect
  // releases the mails of its server (below): their next try is the verdict on the new credentials.
  const settings = new Settings(db, vault, parameters, audit, Date.now, {
    onAppCredentialsChanged: wakeQuietly('the Outlook app credentials', async () => {
      if ((await queue.wakeWaitingFor('oauth_app')) > 0) outbox.wake();
    }),
    // Another dedicated server, or the option off: every waiting mass mailing is routed again. Due once the other
    // processes' cached parameters (SNAPSHOT_TTL_MS) have the change too: routed with the old ones, a mail would
    // wait its whole recheck again.
    onMassMailingChanged: wakeQuietly('the mass-mailing setting', async () => {
      if ((await queue.wakeWaitingFor(MASS_MAILING_WAIT, { at: Date.now() + SNAPSHOT_TTL_MS })) > 0) outbox.wake();
    }),
    // The ports or private hosts a user's server may use changed: the mails the policy held go now. Due at once:
    // every connection reads the policy from the database (host-guard.ts), with no cache to wait out.
    onServerPolicyChanged: async (waits) =>
      wakeQuietly('the mail server policy', async () => {
        let woken = 0;
        for (const failureType of waits) woken += await queue.wakeWaitingFor(failureType);
        if (woken > 0) outbox.wake();
      })(),
  });
  const oauthAppStatus = new OAuthAppStatus(db);
  const tokenStore = new TokenStore({ db, vault, settings, appStatus: oauthAppStatus, log: logger.child({ component: 'oauth' }) });
  const outlookConnect = new OutlookConnect({
    db,
    vault,
    settings,
    appStatus: oauthAppStatus,
    audit,
    log: logger.child({ component: 'oauth' }),
    onConnected: async (kind, serverId) => {
      if (kind !== 'outgoing') return;
      if ((await queue.wakeWaiting(serverId)) > 0) outbox.wake();
    },
  });
  const incoming = new IncomingMail({
    db,
    servers: incomingServers,
    fetchState,
    ingest: new Ingest(blobs),
    parameters,
    log: logger.child({ component: 'incoming' }),
    tokens: () => tokenStore,
    leaseMs: fetchLeaseMs,
    ...(fetchBatchSize !== undefined ? { batchSize: fetchBatchSize } : {}),
  });
  const jobs = new JobStore(db);
  return {
    // HMAC under the vault's key, for values a page hands out and takes back (the API-key form's nonce); the
    // pages get this function, never the vault.
    sign: (data: string) => vault.hmac(data),
    audit,
    users,
    sessions: new Sessions(db),
    apiKeys,
    signIn: new SignIn(users),
    firstRun: new FirstRunSetup(users),
    parameters,
    settings,
    outgoingServers,
    blobs,
    queue,
    outbox,
    /** PostgreSQL: the other processes' dispatchers hear of due mail through it (the workers listen). */
    wake,
    /** OAuth access tokens for Outlook servers: the SMTP and IMAP adapters' TokenProvider. */
    tokens: tokenStore,
    oauthAppStatus,
    outlookConnect,
    incomingServers,
    fetchState,
    incoming,
    messages: new MessageStore(db, blobs),
    /** /readyz: database, migrations, worker heartbeats (issue 11). */
    readiness: new Readiness(database),
    /** GET /metrics and a worker's metrics port (issue 11). */
    metrics: new MetricsScraper({ db, settings, tokenStore }),
    /** Background jobs with progress (issue 11): Fetch Now runs as one. */
    jobs,
    fetchJobs: new FetchJobs(jobs, () => incoming, logger.child({ component: 'jobs' }), { state: fetchState, ms: fetchLeaseMs }),
    /** Webhook registrations and deliveries (issue 11); the worker posts them. */
    webhooks: new Webhooks(db, vault, hostGuard),
  };
}
