// The ordered migration set. Names sort in the order they must run; never edit, rename or remove a released
// migration, add a new one. The numbers have gaps (work numbered in parallel and merged later); a new migration takes
// the next number after the highest here, never a free number in a gap: a database that ran a later migration
// refuses one that sorts before it (Kysely's "corrupted migrations"). order.test.ts holds the released names.
import type { Migration } from 'kysely';
import type { DialectName } from '../database.js';
import { foundation } from './001-foundation.js';
import { outgoing } from './002-outgoing.js';
import { oauth } from './003-oauth.js';
import { incoming } from './004-incoming.js';
import { incomingHardening } from './005-incoming-hardening.js';
import { queueAndTokenLock } from './006-queue-and-token-lock.js';
import { serverPoolAndRate } from './008-server-pool-and-rate.js';
import { sentBy } from './011-sent-by.js';
import { workerHeartbeatsAndJobs } from './014-worker-heartbeats-and-jobs.js';
import { webhooks } from './015-webhooks.js';
import { mailAttempts } from './017-mail-attempts.js';
import { sweepAndScanIndexes } from './018-sweep-and-scan-indexes.js';
import { graphTransport } from './019-graph-transport.js';
import { oauthConnections } from './021-oauth-connections.js';
import { partialOutgoingIndexes } from './022-partial-outgoing-indexes.js';
import { unreturnedUid } from './023-unreturned-uid.js';
import { fetchAttempt } from './024-fetch-attempt.js';
import { followUpMails } from './025-follow-up-mails.js';
import { activeBeforeArchive } from './031-active-before-archive.js';
import { oauthStateBinding } from './033-oauth-state-binding.js';

export function migrationSet(dialect: DialectName): Record<string, Migration> {
  const ctx = { dialect };
  return {
    '001-foundation': foundation(ctx),
    '002-outgoing': outgoing(ctx),
    '003-oauth': oauth(ctx),
    '004-incoming': incoming(ctx),
    '005-incoming-hardening': incomingHardening(ctx),
    '006-queue-and-token-lock': queueAndTokenLock(ctx),
    '008-server-pool-and-rate': serverPoolAndRate(ctx),
    '011-sent-by': sentBy(ctx),
    '014-worker-heartbeats-and-jobs': workerHeartbeatsAndJobs(ctx),
    '015-webhooks': webhooks(ctx),
    '017-mail-attempts': mailAttempts(ctx),
    '018-sweep-and-scan-indexes': sweepAndScanIndexes(ctx),
    '019-graph-transport': graphTransport(ctx),
    '021-oauth-connections': oauthConnections(ctx),
    '022-partial-outgoing-indexes': partialOutgoingIndexes(ctx),
    '023-unreturned-uid': unreturnedUid(ctx),
    '024-fetch-attempt': fetchAttempt(ctx),
    '025-follow-up-mails': followUpMails(ctx),
    '031-active-before-archive': activeBeforeArchive(ctx),
    '033-oauth-state-binding': oauthStateBinding(ctx),
  };
}
