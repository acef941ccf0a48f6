// Retention: how long what Juniper stores is kept, as system parameters in days (unset = kept for ever), and
// the housekeeping run that applies them. Only finished outgoing mails (sent, failed, cancelled) are touched,
// never one still queued, and bodies only of sent mails (a failed or cancelled one can still be retried, and a
// retry of a stripped mail would send an empty one); blobs go only when nothing references them and they are over an hour old (an
// enqueue or a fetch writes its blob and its row in one transaction, so a fresh blob is never mid-write).
import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.js';
import type { Logger } from '../lib/logger.js';
import { processMetrics } from '../metrics/process-metrics.js';
import type { Parameters } from '../settings/parameters.js';

export const DAY_MS = 86_400_000;

export const RETENTION_KEYS = {
  sentMails: 'retention.sent_mails.days',
  mailBodies: 'retention.mail_bodies.days',
  incomingRaw: 'retention.incoming_raw.days',
  quarantined: 'retention.quarantined.days',
  webhookDeliveries: 'retention.webhook_deliveries.days',
} as const;

const BLOB_GRACE_MS = 60 * 60 * 1000;
const FINISHED = ['sent', 'failed', 'cancelled'] as const;

export interface RetentionCounts {
  sentMails: number;
  mailBodies: number;
  incomingRaw: number;
  quarantined: number;
  webhookDeliveries: number;
  blobs: number;
}

/** Days as a positive whole number, or undefined (unset, or a value that no longer parses: keep). */
export function retentionDays(value: string | undefined): number | undefined {
  if (value === undefined || !/^[1-9][0-9]{0,5}$/.test(value.trim())) return undefined;
  return Number(value.trim());
}

export class Retention {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly parameters: Parameters,
    private readonly log: Logger,
  ) {}

  async run(now = Date.now()): Promise<RetentionCounts> {
    const days = async (key: string) => retentionDays(await this.parameters.value(key));
    const cutoff = (d: number | undefined) => (d === undefined ? undefined : now - d * DAY_MS);
    const counts: RetentionCounts = { sentMails: 0, mailBodies: 0, incomingRaw: 0, quarantined: 0, webhookDeliveries: 0, blobs: 0 };
    const { db } = this;

    const bodies = cutoff(await days(RETENTION_KEYS.mailBodies));
    if (bodies !== undefined) {
      const old = db.selectFrom('outgoing_mails').select('id').where('state', '=', 'sent').where('updated_at', '<', bodies);
      await db.deleteFrom('outgoing_attachments').where('mail_id', 'in', old).execute();
      const r = await db
        .updateTable('outgoing_mails')
        .set({ text_body: null, html_body: null, raw_sha256: null })
        .where('state', '=', 'sent')
        .where('updated_at', '<', bodies)
        .where((eb) => eb.or([eb('text_body', 'is not', null), eb('html_body', 'is not', null), eb('raw_sha256', 'is not', null)]))
        .executeTakeFirst();
      counts.mailBodies = Number(r.numUpdatedRows);
    }

    const mails = cutoff(await days(RETENTION_KEYS.sentMails));
    if (mails !== undefined) {
      counts.sentMails = await db.transaction().execute(async (trx) => {
        const old = trx.selectFrom('outgoing_mails').select('id').where('state', 'in', FINISHED).where('updated_at', '<', mails);
        // Incoming messages that point at a mail (its bounce, its copy) keep themselves, without the link.
        await trx.updateTable('messages').set({ bounced_mail_id: null }).where('bounced_mail_id', 'in', old).execute();
        await trx.updateTable('messages').set({ outgoing_mail_id: null }).where('outgoing_mail_id', 'in', old).execute();
        const r = await trx.deleteFrom('outgoing_mails').where('state', 'in', FINISHED).where('updated_at', '<', mails).executeTakeFirst();
        return Number(r.numDeletedRows);
      });
    }

    const raw = cutoff(await days(RETENTION_KEYS.incomingRaw));
    if (raw !== undefined) {
      // The parsed message, its text and attachments stay; only the original .eml goes.
      const r = await db.updateTable('messages').set({ raw_sha256: null }).where('quarantined', '=', 0).where('created_at', '<', raw).where('raw_sha256', 'is not', null).executeTakeFirst();
      counts.incomingRaw = Number(r.numUpdatedRows);
    }

    const quarantine = cutoff(await days(RETENTION_KEYS.quarantined));
    if (quarantine !== undefined) {
      const r = await db.deleteFrom('messages').where('quarantined', '=', 1).where('created_at', '<', quarantine).executeTakeFirst();
      counts.quarantined = Number(r.numDeletedRows);
    }

    // Finished deliveries only (a pending one is still to be posted). The event scanner looks no further back
    // than this same window (event-scanner.ts), so an event whose delivery row went is not queued again.
    const deliveries = cutoff(await days(RETENTION_KEYS.webhookDeliveries));
    if (deliveries !== undefined) {
      const r = await db.deleteFrom('webhook_deliveries').where('state', 'in', ['delivered', 'failed']).where('created_at', '<', deliveries).executeTakeFirst();
      counts.webhookDeliveries = Number(r.numDeletedRows);
    }

    // One statement, unreferenced AND past the grace: a put of a blob that is about to be referenced again
    // refreshes its created_at (blob-store.ts), and the row it locks is re-checked by the delete, so a
    // concurrent enqueue or fetch that reuses an old blob never loses it.
    const r = await db
      .deleteFrom('blobs')
      .where('created_at', '<', now - BLOB_GRACE_MS)
      .where((eb) =>
        eb.and([
          eb.not(eb.exists(eb.selectFrom('outgoing_mails').select('id').whereRef('outgoing_mails.raw_sha256', '=', 'blobs.sha256'))),
          eb.not(eb.exists(eb.selectFrom('outgoing_attachments').select('id').whereRef('outgoing_attachments.blob_sha256', '=', 'blobs.sha256'))),
          eb.not(eb.exists(eb.selectFrom('messages').select('id').whereRef('messages.raw_sha256', '=', 'blobs.sha256'))),
          eb.not(eb.exists(eb.selectFrom('message_attachments').select('id').whereRef('message_attachments.blob_sha256', '=', 'blobs.sha256'))),
        ]),
      )
      .executeTakeFirst();
    counts.blobs = Number(r.numDeletedRows);

    const kinds = { sent_mails: counts.sentMails, mail_bodies: counts.mailBodies, incoming_raw: counts.incomingRaw, quarantined: counts.quarantined, webhook_deliveries: counts.webhookDeliveries, blobs: counts.blobs };
    for (const [kind, n] of Object.entries(kinds)) if (n > 0) processMetrics()?.retentionDeleted.inc({ kind }, n);
    if (Object.values(kinds).some((n) => n > 0)) this.log.info({ op: 'retention', ...kinds }, 'retention: old data removed');
    return counts;
  }
}

/** The hourly housekeeping job (workers.ts adds it to the others). */
export function retentionJob(deps: { db: Kysely<DB>; parameters: Parameters; log: Logger }) {
  const retention = new Retention(deps.db, deps.parameters, deps.log);
  return { name: 'retention', everyMs: 60 * 60 * 1000, run: async () => void (await retention.run()) };
}
