// Table types of migration 015, merged into the DB interface of src/db/schema.ts (as src/jobs/tables.ts does).
import type { Generated } from 'kysely';

export interface WebhooksTable {
  id: Generated<number>;
  url: string;
  /** JSON array of WebhookEvent. */
  events: string;
  /** The signing secret, vault ciphertext (shown in clear once, when the webhook is created). */
  secret_enc: string;
  active: Generated<number>;
  created_by_user_id: number | null;
  created_at: number;
  updated_at: number;
  deleted_at: number | null;
}

export type DeliveryState = 'pending' | 'delivered' | 'failed';

export interface WebhookDeliveriesTable {
  id: Generated<number>;
  webhook_id: number;
  event: string;
  subject: string;
  payload: string;
  state: DeliveryState;
  attempts: Generated<number>;
  next_attempt_at: number;
  lease_owner: string | null;
  lease_until: number | null;
  last_status: number | null;
  last_response: string | null;
  last_error: string | null;
  last_attempt_at: number | null;
  delivered_at: number | null;
  created_at: number;
}

declare module '../db/schema.js' {
  interface DB {
    webhooks: WebhooksTable;
    webhook_deliveries: WebhookDeliveriesTable;
  }
}
