import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Services } from '../../services.js';
import { parseInput } from '../../lib/validate.js';
import { messageSummary, type Viewer } from '../../mailbox/messages.js';
import { DOWNLOAD_HEADERS, servedAttachmentType } from '../downloads.js';

export const idParams = z.object({ id: z.coerce.number().int().positive() });
export const attachmentParams = idParams.extend({ attachmentId: z.coerce.number().int().positive() });
export const listQuery = z.object({
  serverId: z.coerce.number().int().positive().optional(),
  threadId: z.coerce.number().int().positive().optional(),
  mailbox: z.string().trim().min(1).max(64).optional(),
  quarantined: z.enum(['true', 'false']).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
  after: z.coerce.number().int().min(0).optional(),
});
export const threadsQuery = z.object({
  serverId: z.coerce.number().int().positive().optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});

const viewerOf = (request: FastifyRequest): Viewer => {
  const user = request.principal!.user;
  return { userId: user.id, admin: user.role === 'admin' };
};

/** A filename safe inside a quoted Content-Disposition parameter, with the full name in filename* (RFC 6266). */
function contentDisposition(kind: 'attachment' | 'inline', filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `${kind}; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename)}`;
}

export function messageRoutes(services: Pick<Services, 'messages'>): FastifyPluginAsync {
  const { messages } = services;
  return async (app) => {
    app.get('/api/v1/messages', { config: { access: 'user' } }, async (request) => {
      const q = parseInput(listQuery, request.query, 'query');
      const rows = await messages.list(viewerOf(request), {
        serverId: q.serverId,
        threadId: q.threadId,
        mailbox: q.mailbox,
        quarantined: q.quarantined === undefined ? undefined : q.quarantined === 'true',
        limit: q.limit,
        after: q.after,
      });
      return rows.map(messageSummary);
    });

    app.get('/api/v1/messages/:id', { config: { access: 'user' } }, async (request) => {
      const { id } = parseInput(idParams, request.params, 'path');
      return messages.detail(viewerOf(request), id);
    });

    app.get('/api/v1/messages/:id/raw', { config: { access: 'user' } }, async (request, reply) => {
      const { id } = parseInput(idParams, request.params, 'path');
      const raw = await messages.raw(viewerOf(request), id);
      return reply.headers(DOWNLOAD_HEADERS).header('content-type', 'message/rfc822').header('content-disposition', contentDisposition('attachment', `message-${id}.eml`)).send(raw);
    });

    app.get('/api/v1/messages/:id/attachments/:attachmentId', { config: { access: 'user' } }, async (request, reply) => {
      const { id, attachmentId } = parseInput(attachmentParams, request.params, 'path');
      const a = await messages.attachment(viewerOf(request), id, attachmentId);
      // Always a download: an HTML or SVG attachment rendered inline would run in Juniper's origin; and only
      // inert types keep their label (downloads.ts), since a download can still be a page's <script src>.
      return reply
        .headers(DOWNLOAD_HEADERS)
        .header('content-type', servedAttachmentType(a.contentType))
        .header('content-disposition', contentDisposition('attachment', a.filename))
        .send(a.content);
    });

    app.get('/api/v1/threads', { config: { access: 'user' } }, async (request) => {
      const q = parseInput(threadsQuery, request.query, 'query');
      return messages.threads(viewerOf(request), q);
    });
  };
}
