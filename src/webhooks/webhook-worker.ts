// The webhook worker of a process, built from the app (workers.ts starts and stops it).
import type { App } from '../app.js';
import { EventScanner } from './event-scanner.js';
import { WebhookWorker, defaultDeliveryOptions, type DeliveryOptions } from './delivery-worker.js';

export function webhookWorker(app: App, options: Partial<DeliveryOptions> = {}, now?: () => number): WebhookWorker {
  const { db } = app.database;
  return new WebhookWorker({ db, webhooks: app.services.webhooks, scanner: new EventScanner(db, app.services.parameters), log: app.logger.child({ worker: 'webhooks' }), ...(now ? { now } : {}) }, { ...defaultDeliveryOptions, ...options });
}
