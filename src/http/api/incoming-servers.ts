import type { FastifyPluginAsync } from 'fastify';
import type { Services } from '../../services.js';
import { answerFetch } from './jobs.js';
import { managedServer } from '../managed-server.js';
import { mailServerRoutes } from './mail-servers.js';

export function incomingServerRoutes(services: Pick<Services, 'incomingServers' | 'incoming' | 'oauthAppStatus' | 'fetchJobs' | 'jobs'>): FastifyPluginAsync {
  const { incomingServers, incoming } = services;
  return async (app) => {
    mailServerRoutes(app, incomingServers, services.oauthAppStatus, async (server) => {
      const r = await incoming.testAndConfirm(server);
      const state = (await incomingServers.get(server.id)).state;
      return { ok: r.ok, message: r.message, stage: r.stage, state, ...(r.serverReply ? { serverReply: r.serverReply } : {}) };
    });

    app.post('/api/v1/incoming-servers/:id/fetch', { config: { access: 'user' } }, async (request, reply) => answerFetch(services, request, reply, await managedServer(incomingServers, request)));
  };
}
