// Builds the Fastify instance with every route; never listens (main.ts does, tests use inject()).
import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyRequest } from 'fastify';
import { requestIdOf, type Logger } from '../lib/logger.js';
import { AppError, errorBody, errorCatalogue, isAppError } from '../lib/errors.js';
import { redactUrl } from '../lib/redact-url.js';
import type { Services } from '../services.js';
import type { TrustProxy } from '../config.js';
import type { Access } from './access.js';
import { installSecurityHeaders } from './security-headers.js';
import { secureCookiesHook } from './cookies.js';
import { authenticator } from './authenticate.js';
import { bodyTooLarge, DEFAULT_BODY_LIMIT, isBodyTooLarge, parseForm } from './body-limits.js';
import { healthRoutes } from './api/health.js';
import { metricsRoutes } from './api/metrics.js';
import { openApiRoutes } from './api/openapi.js';
import { jobRoutes } from './api/jobs.js';
import { webhookRoutes } from './api/webhooks.js';
import { sessionRoutes } from './api/session.js';
import { userRoutes } from './api/users.js';
import { parameterRoutes } from './api/parameters.js';
import { settingsRoutes } from './api/settings.js';
import { sendNotFoundPage, wantsHtml } from '../ui/error-page.js';
import { pageRoutes } from '../ui/pages.js';
import { outgoingServerRoutes } from './api/outgoing-servers.js';
import { mailRoutes } from './api/mails.js';
import { incomingServerRoutes } from './api/incoming-servers.js';
import { messageRoutes } from './api/messages.js';
import { outlookRoutes } from './api/outlook.js';
import { oauthCallbackRoutes } from './oauth-callback.js';

export interface DeclaredRoute {
  method: string;
  url: string;
  access: Access;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Every route with who may call it: for the access test and the API description. */
    declaredRoutes: readonly DeclaredRoute[];
  }
}

/** A route without an access declaration is a programming error caught at start-up, not a hole. */
export function declaredRoute(route: { method: string | string[]; url: string; config?: { access?: Access } }): DeclaredRoute {
  const method = Array.isArray(route.method) ? route.method.join(',') : route.method;
  const access = route.config?.access;
  if (access === undefined) throw new Error(`Route ${method} ${route.url} does not declare who may call it (config.access).`);
  return { method, url: route.url, access };
}

export interface HttpOptions {
  logger: Logger;
  services: Services;
  /** JUNIPER_TRUST_PROXY: only these peers may set the client address and scheme (X-Forwarded-For/-Proto). */
  trustProxy?: TrustProxy;
}

export async function buildHttpServer({ logger, services, trustProxy = false }: HttpOptions): Promise<FastifyInstance> {
  // Typed as FastifyBaseLogger so the instance has Fastify's default generics (pino's Logger adds its own).
  const baseLogger: FastifyBaseLogger = logger;
  const app = Fastify({
    loggerInstance: baseLogger,
    // Routes where mail arrives raise it (body-limits.ts); everything else is small.
    bodyLimit: DEFAULT_BODY_LIMIT,
    // Fastify turns Node's own limit off; without one, a body refused before it was read (no credentials) is
    // still drained for as long as the client keeps sending. Five minutes carry a 30 MB mail at under 1 Mbit/s.
    requestTimeout: 300_000,
    trustProxy: fastifyTrustProxy(trustProxy),
    genReqId: (req) => requestIdOf(req.headers['x-request-id']),
  });
  app.addHook('onRequest', async (request, reply) => void reply.header('x-request-id', request.id));
  // Fastify's default request serializer logs the full URL; ours drops one-time secrets from query strings.
  // Set once on the logger every request's child comes from: given to each child, pino rebuilt its serializer
  // chain per request (1.3 % of the end-to-end benchmark's CPU).
  app.setChildLoggerFactory((parent, bindings, opts) => requestLoggerBase(parent).child(bindings, opts));

  app.decorateRequest('principal', null);
  const routes: DeclaredRoute[] = [];
  app.decorate('declaredRoutes', routes);
  app.addHook('onRoute', (route) => {
    routes.push(declaredRoute(route));
  });
  await app.register(cookie);
  // After the cookie plugin's own onSend hook, which writes the Set-Cookie headers this one completes.
  app.addHook('onSend', secureCookiesHook(() => services.parameters.value('web.base.url')));
  installSecurityHeaders(app);
  await app.register(formbody, { parser: parseForm });
  // Access is decided from the headers before the body is read (a hook after the cookie plugin's, which parses
  // the session cookie); the CSRF token may be a form field, so its check waits for the parsed body.
  const auth = authenticator(services);
  app.addHook('onRequest', auth.authenticate);
  app.addHook('preValidation', auth.checkCsrf);

  app.setErrorHandler((err: FastifyError | AppError, request, reply) => {
    const appError = toAppError(err, request);
    if (appError.status >= 500) request.log.error({ err }, 'request failed');
    else request.log.info({ code: appError.code, status: appError.status }, appError.message);
    return reply.status(appError.status).send({ error: errorBody(appError) });
  });
  app.setNotFoundHandler((request, reply) =>
    // A browser gets the UI's not-found page; scripts and the API keep the JSON.
    wantsHtml(request)
      ? sendNotFoundPage(request, reply, `There is no page at ${redactUrl(request.url).split('?')[0]}. Check the address, or start again from the menu.`)
      : reply.status(404).send({ error: { code: 'JUNIPER_ERR_NOT_FOUND', message: `No route ${request.method} ${redactUrl(request.url)}.` } }),
  );

  await app.register(healthRoutes(services.readiness));
  await app.register(metricsRoutes(services.metrics));
  await app.register(openApiRoutes);
  await app.register(jobRoutes(services));
  await app.register(webhookRoutes(services));
  await app.register(sessionRoutes(services));
  await app.register(userRoutes(services));
  await app.register(parameterRoutes(services));
  await app.register(settingsRoutes(services));
  await app.register(outgoingServerRoutes(services));
  await app.register(mailRoutes(services));
  await app.register(incomingServerRoutes(services));
  await app.register(messageRoutes(services));
  await app.register(outlookRoutes(services));
  await app.register(oauthCallbackRoutes(services));
  await app.register(pageRoutes(services));
  return app;
}

const requestSerializers = {
  req: (req: { method: string; url: string; ip?: string }) => ({ method: req.method, url: redactUrl(req.url), ip: req.ip }),
};
const requestBases = new WeakMap<FastifyBaseLogger, FastifyBaseLogger>();
/** The parent's child that carries the request serializer (one per parent logger). */
function requestLoggerBase(parent: FastifyBaseLogger): FastifyBaseLogger {
  let base = requestBases.get(parent);
  if (!base) requestBases.set(parent, (base = parent.child({}, { serializers: requestSerializers })));
  return base;
}

function fastifyTrustProxy(trust: TrustProxy): false | string[] {
  return trust === false ? false : [...trust];
}

function toAppError(err: FastifyError | AppError, request: FastifyRequest): AppError {
  if (isAppError(err)) return err;
  if (isBodyTooLarge(err)) return bodyTooLarge(request);
  if (err.validation) return new AppError('JUNIPER_ERR_VALIDATION', `Invalid request: ${err.message}`);
  const status = err.statusCode;
  if (status && status >= 400 && status < 500) {
    return new AppError('JUNIPER_ERR_VALIDATION', err.message);
  }
  return new AppError('JUNIPER_ERR_INTERNAL', errorCatalogue.JUNIPER_ERR_INTERNAL.message, { cause: err });
}
