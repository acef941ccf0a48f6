// What the API description says about each route beyond the route table: a summary, and the very zod
// schemas the handler validates its path, query and body with (imported from the route modules, never
// copied), so the description cannot drift from the validation. openapi.test.ts fails for a route of the
// table missing here, and for an entry here that names no route.
import type { z } from 'zod';
import * as serversApi from '../http/api/mail-servers.js';
import { idParams } from '../http/managed-server.js';
import * as jobsApi from '../http/api/jobs.js';
import * as webhooksApi from '../http/api/webhooks.js';
import * as mailsApi from '../http/api/mails.js';
import * as messagesApi from '../http/api/messages.js';
import * as outgoingApi from '../http/api/outgoing-servers.js';
import * as outlookApi from '../http/api/outlook.js';
import * as parametersApi from '../http/api/parameters.js';
import * as sessionApi from '../http/api/session.js';
import * as usersApi from '../http/api/users.js';
import { createIncomingServerSchema, patchIncomingServerSchema } from '../incoming/server-rules.js';
import { enqueueSchema } from '../outgoing/enqueue-rules.js';
import { createOutgoingServerSchema, patchOutgoingServerSchema } from '../outgoing/server-rules.js';
import { settingsPatchSchema } from '../settings/settings.js';
import { newUserSchema } from '../users/users.js';

export interface Operation {
  summary: string;
  tag: string;
  params?: z.ZodObject;
  query?: z.ZodObject;
  body?: z.ZodType;
  /** Success status and what it carries (default 200 JSON). */
  ok?: { status: number; description: string; contentType?: string };
  headers?: { name: string; description: string }[];
}

const json = (status: number, description: string) => ({ status, description });

export const operations: Record<string, Operation> = {
  'GET /healthz': { tag: 'operations', summary: 'Liveness: 200 while the process serves HTTP' },
  'GET /readyz': { tag: 'operations', summary: 'Readiness: database, migrations and a live worker (200 or 503 with the failing checks)' },
  'GET /metrics': { tag: 'operations', summary: 'Prometheus metrics (admins; see docs/operations.md)', ok: { status: 200, description: 'Prometheus text format', contentType: 'text/plain' } },
  'GET /api/v1/openapi.json': { tag: 'operations', summary: 'This API description (OpenAPI 3.0)' },
  'GET /api/v1/docs': { tag: 'operations', summary: 'A browsable page of this API description', ok: { status: 200, description: 'HTML page', contentType: 'text/html' } },
  'GET /api/v1/docs/docs.js': { tag: 'operations', summary: 'The script of the browsable page', ok: { status: 200, description: 'JavaScript', contentType: 'text/javascript' } },

  'POST /api/v1/session': { tag: 'session', summary: 'Sign in: answers { user, csrfToken } and sets the session cookie', body: sessionApi.signInSchema },
  'GET /api/v1/session': { tag: 'session', summary: 'Who am I' },
  'DELETE /api/v1/session': { tag: 'session', summary: 'Sign out', ok: json(204, 'Signed out') },
  'POST /api/v1/setup': { tag: 'session', summary: 'Create the first admin with the one-time setup token', body: sessionApi.setupSchema, ok: json(201, 'The admin, signed in') },

  'GET /api/v1/users': { tag: 'users', summary: 'List users' },
  'POST /api/v1/users': { tag: 'users', summary: 'Create a user', body: newUserSchema, ok: json(201, 'The user') },
  'GET /api/v1/api-keys': { tag: 'users', summary: 'The caller\'s API keys (prefixes only)' },
  'POST /api/v1/api-keys': { tag: 'users', summary: 'Create an API key for the caller (the key is shown once)', body: usersApi.apiKeySchema, ok: json(201, 'The key') },

  'GET /api/v1/parameters': { tag: 'settings', summary: 'List system parameters' },
  'GET /api/v1/parameters/{key}': { tag: 'settings', summary: 'Read a system parameter', params: parametersApi.keyParams },
  'PUT /api/v1/parameters/{key}': { tag: 'settings', summary: 'Set a system parameter (known keys are validated)', params: parametersApi.keyParams, body: parametersApi.putSchema },
  'DELETE /api/v1/parameters/{key}': { tag: 'settings', summary: 'Remove a system parameter', params: parametersApi.keyParams, ok: json(204, 'Removed') },
  'GET /api/v1/settings': { tag: 'settings', summary: 'Settings (the client secret shows as hasClientSecret)' },
  'PUT /api/v1/settings': {
    tag: 'settings',
    summary: 'Change settings (takes back what GET returned; read-only fields unchanged; outlook.enabled false is refused, 409 JUNIPER_ERR_OUTLOOK_IN_USE, while a server that is not archived uses Outlook)',
    body: settingsPatchSchema,
    ok: json(200, "The settings; after a change of Client ID, client secret, cloud or tenant also credentialsCheck: { result: 'ok' | 'failed' | 'skipped', code?, message } (Microsoft's verdict; the save stands either way)"),
  },

  'GET /api/v1/outgoing-servers': { tag: 'outgoing', summary: 'List outgoing servers', query: serversApi.listQuery },
  'POST /api/v1/outgoing-servers': { tag: 'outgoing', summary: 'Create an outgoing server', body: createOutgoingServerSchema, ok: json(201, 'The server') },
  'GET /api/v1/outgoing-servers/{id}': { tag: 'outgoing', summary: 'Read an outgoing server', params: idParams },
  'PATCH /api/v1/outgoing-servers/{id}': { tag: 'outgoing', summary: 'Change an outgoing server', params: idParams, body: patchOutgoingServerSchema },
  'DELETE /api/v1/outgoing-servers/{id}': { tag: 'outgoing', summary: 'Archive an outgoing server', params: idParams },
  'POST /api/v1/outgoing-servers/{id}/restore': { tag: 'outgoing', summary: 'Restore an archived outgoing server: active again if it was when archived, else inactive', params: idParams },
  'POST /api/v1/outgoing-servers/{id}/test': { tag: 'outgoing', summary: 'Test Connection: { ok, message, stage }', params: idParams },
  'POST /api/v1/outgoing-servers/{id}/outlook/connect': { tag: 'outgoing', summary: 'Start connecting an Outlook account: { authorizeUrl }', params: outlookApi.idParams },
  'GET /api/v1/route': { tag: 'outgoing', summary: 'Which outgoing server a mail from an address takes, and why', query: outgoingApi.routeQuery },

  'POST /api/v1/mails': {
    tag: 'mails',
    summary: 'Queue a mail (stored before the answer): { id, messageId }',
    body: enqueueSchema,
    ok: json(202, 'Queued'),
    headers: [{ name: 'Idempotency-Key', description: 'Repeating a request with the same key returns the first answer (kept 24 hours)' }],
  },
  'POST /api/v1/mails/batch': { tag: 'mails', summary: 'Queue up to 1,000 mails in one transaction; one result per mail', body: mailsApi.batchBody },
  'GET /api/v1/mails': { tag: 'mails', summary: 'The outgoing queue, newest first', query: mailsApi.listQuery },
  'GET /api/v1/mails/{id}': { tag: 'mails', summary: 'One outgoing mail with its state and last error', params: mailsApi.idParams },
  'POST /api/v1/mails/{id}/retry': { tag: 'mails', summary: 'Send a failed or waiting mail again now', params: mailsApi.idParams },
  'POST /api/v1/mails/{id}/cancel': { tag: 'mails', summary: 'Cancel a queued mail', params: mailsApi.idParams },

  'GET /api/v1/incoming-servers': { tag: 'incoming', summary: 'List incoming servers', query: serversApi.listQuery },
  'POST /api/v1/incoming-servers': { tag: 'incoming', summary: 'Create an incoming (IMAP) server', body: createIncomingServerSchema, ok: json(201, 'The server') },
  'GET /api/v1/incoming-servers/{id}': { tag: 'incoming', summary: 'Read an incoming server', params: idParams },
  'PATCH /api/v1/incoming-servers/{id}': { tag: 'incoming', summary: 'Change an incoming server', params: idParams, body: patchIncomingServerSchema },
  'DELETE /api/v1/incoming-servers/{id}': { tag: 'incoming', summary: 'Archive an incoming server', params: idParams },
  'POST /api/v1/incoming-servers/{id}/restore': { tag: 'incoming', summary: 'Restore an archived incoming server: active again if it was when archived, else inactive', params: idParams },
  'POST /api/v1/incoming-servers/{id}/fetch': {
    tag: 'incoming',
    summary: 'Fetch now as a background job: 202 with the job (joined: true when one was running); ?wait=true answers { fetched, stored, duplicates, quarantined } when it is done',
    params: idParams,
    query: jobsApi.fetchQuery,
    ok: json(202, 'The job'),
  },
  'GET /api/v1/jobs/{id}': { tag: 'jobs', summary: 'A background job: state (running, succeeded, failed), progress { done, total }, result or error', params: jobsApi.jobIdParams },
  'POST /api/v1/incoming-servers/{id}/test': { tag: 'incoming', summary: 'Test & Confirm: { ok, message, stage, state }', params: idParams },
  'POST /api/v1/incoming-servers/{id}/outlook/connect': { tag: 'incoming', summary: 'Start connecting an Outlook account: { authorizeUrl }', params: outlookApi.idParams },

  'GET /api/v1/webhooks': { tag: 'webhooks', summary: 'List webhooks (the secret shows as hasSecret)' },
  'POST /api/v1/webhooks': { tag: 'webhooks', summary: 'Register a URL for events; the answer carries the signing secret, shown this once (a browser session also sends currentPassword)', body: webhooksApi.createWebhookBody, ok: json(201, 'The webhook with its secret') },
  'GET /api/v1/webhooks/{id}': { tag: 'webhooks', summary: 'Read a webhook', params: webhooksApi.webhookIdParams },
  'DELETE /api/v1/webhooks/{id}': { tag: 'webhooks', summary: 'Delete a webhook (its pending deliveries are dropped)', params: webhooksApi.webhookIdParams },
  'GET /api/v1/webhooks/{id}/deliveries': { tag: 'webhooks', summary: 'Deliveries, newest first, with state, attempts and the last response', params: webhooksApi.webhookIdParams, query: webhooksApi.deliveriesQuery },
  'POST /api/v1/webhooks/{id}/deliveries/{deliveryId}/replay': { tag: 'webhooks', summary: 'Send a delivery again now', params: webhooksApi.deliveryParams },

  'GET /api/v1/messages': { tag: 'messages', summary: 'Fetched messages, oldest first; page with after = the last id', query: messagesApi.listQuery },
  'GET /api/v1/messages/{id}': { tag: 'messages', summary: 'A parsed message with its attachments', params: messagesApi.idParams },
  'GET /api/v1/messages/{id}/raw': { tag: 'messages', summary: 'The original message (.eml)', params: messagesApi.idParams, ok: { status: 200, description: 'message/rfc822', contentType: 'message/rfc822' } },
  'GET /api/v1/messages/{id}/attachments/{attachmentId}': { tag: 'messages', summary: 'One attachment', params: messagesApi.attachmentParams, ok: { status: 200, description: 'The attachment', contentType: 'application/octet-stream' } },
  'GET /api/v1/threads': { tag: 'messages', summary: 'Conversations, most recent first', query: messagesApi.threadsQuery },
};
