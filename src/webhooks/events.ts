// The webhook events, the registration input, and the signature: pure, so a receiver's verification can be
// written from this file alone (docs/operations.md shows it).
import crypto from 'node:crypto';
import { z } from 'zod';

export const WEBHOOK_EVENTS = ['message.received', 'mail.sent', 'mail.failed', 'mail.bounced', 'server.needs_reconnect'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

export const createWebhookSchema = z.strictObject({
  url: z
    .string()
    .trim()
    .max(2000)
    .refine((u) => URL.canParse(u) && ['http:', 'https:'].includes(new URL(u).protocol), { error: 'must be an http:// or https:// URL' }),
  events: z.array(z.enum(WEBHOOK_EVENTS, { error: `must be one of ${WEBHOOK_EVENTS.join(', ')}` })).min(1, 'name at least one event').max(WEBHOOK_EVENTS.length),
  active: z.boolean().default(true),
});
export type CreateWebhookInput = z.output<typeof createWebhookSchema>;

export const SIGNATURE_HEADER = 'juniper-signature';
export const TIMESTAMP_HEADER = 'juniper-timestamp';
export const EVENT_HEADER = 'juniper-event';
export const DELIVERY_HEADER = 'juniper-delivery';

/** `v1=` + hex HMAC-SHA256 of `<timestamp>.<body>` under the webhook's secret (timestamp: Unix seconds). */
export function sign(secret: string, timestamp: number, body: string): string {
  return `v1=${crypto.createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** For receivers (and the tests): checks the signature in constant time and that the timestamp is recent. */
export function verify(secret: string, timestamp: string, body: string, signature: string, nowSeconds = Math.floor(Date.now() / 1000), toleranceSeconds = 300): boolean {
  const ts = Number(timestamp);
  if (!Number.isInteger(ts) || Math.abs(nowSeconds - ts) > toleranceSeconds) return false;
  const expected = Buffer.from(sign(secret, ts, body));
  const got = Buffer.from(signature);
  return expected.length === got.length && crypto.timingSafeEqual(expected, got);
}
