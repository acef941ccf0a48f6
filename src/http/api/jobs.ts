// Background jobs over HTTP: GET /api/v1/jobs/:id (state and progress; whoever may manage the job's target may
// read it, so a second person who joined a fetch sees it too), the answer of a started fetch, and the small
// script that animates a job's progress bar on a page (no inline script: the page policy is script-src 'self').
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Services } from '../../services.js';
import type { IncomingServer } from '../../db/schema.js';
import { assertMayManageIncoming } from '../../incoming/servers.js';
import { AppError } from '../../lib/errors.js';
import { parseInput } from '../../lib/validate.js';
import { jobView, type Job } from '../../jobs/job-store.js';
import { PROGRESS_JS } from '../../jobs/progress-html.js';

export const jobIdParams = z.object({ id: z.coerce.number().int().positive() });
export const fetchQuery = z.object({ wait: z.enum(['true', 'false']).optional() });

async function assertMayRead(services: Pick<Services, 'incomingServers'>, request: FastifyRequest, job: Job): Promise<void> {
  const user = request.principal!.user;
  const [type, id] = job.target.split(':');
  if (type === 'incoming_server') {
    try {
      assertMayManageIncoming(user, await services.incomingServers.get(Number(id)));
      return;
    } catch (e) {
      if (!(e instanceof AppError)) throw e;
    }
  } else if (user.role === 'admin' || job.created_by_user_id === user.id) return;
  // Someone else's job is not revealed to exist.
  throw new AppError('JUNIPER_ERR_NOT_FOUND', `No job with id ${job.id}.`);
}

/**
 * POST /api/v1/incoming-servers/:id/fetch: 202 with the job (`joined: true` when one was already running).
 * `?wait=true` waits for it and answers the counts as before jobs existed, or the fetch's own error.
 */
export async function answerFetch(services: Pick<Services, 'fetchJobs' | 'jobs'>, request: FastifyRequest, reply: FastifyReply, server: IncomingServer) {
  const { wait } = parseInput(fetchQuery, request.query, 'query');
  const { job, joined } = await services.fetchJobs.start(server, request.principal!.user.id);
  if (wait === 'true') {
    const outcome = await services.fetchJobs.settled(job.id);
    if (outcome?.ok) return outcome.counts;
    if (outcome) throw outcome.error;
    // A joined run that ended between start and settled: its row has the outcome (start never joins another
    // process's job, so there is nothing else this can be).
    const ended = await services.jobs.get(job.id);
    if (ended.state === 'succeeded') return JSON.parse(ended.result ?? 'null') as unknown;
    if (ended.state === 'failed') throw new AppError('JUNIPER_ERR_CONFLICT', `Fetching incoming server "${server.name}" (id ${server.id}) failed (job ${job.id}): ${ended.error ?? 'no reason recorded'}`, { details: { job: job.id } });
    throw new AppError('JUNIPER_ERR_CONFLICT', `Incoming server "${server.name}" (id ${server.id}) is still being fetched by job ${job.id}; poll GET /api/v1/jobs/${job.id}.`);
  }
  return reply.status(202).send({ ...jobView(job), joined });
}

export function jobRoutes(services: Pick<Services, 'jobs' | 'incomingServers' | 'fetchJobs'>): FastifyPluginAsync {
  return async (app) => {
    app.get('/api/v1/jobs/:id', { config: { access: 'user' }, logLevel: 'warn' }, async (request) => {
      const { id } = parseInput(jobIdParams, request.params, 'path');
      const job = await services.jobs.get(id);
      await assertMayRead(services, request, job);
      // A fetch job whose process was killed reads as failed as soon as its server's lease says so.
      return jobView(await services.fetchJobs.checked(job));
    });
    app.get('/jobs/progress.js', { config: { access: 'public' } }, async (_request, reply) => reply.type('text/javascript; charset=utf-8').send(PROGRESS_JS));
  };
}
