// One pino logger for the process. Secrets must never reach a log line: the redaction list covers every
// field name under which a secret could travel (request headers, bodies, our own objects).
import crypto from 'node:crypto';
import { pino, type Logger, type LoggerOptions, type DestinationStream } from 'pino';

export const redactedPaths = [
  'password',
  'newPassword',
  'clientSecret',
  'client_secret',
  'accessToken',
  'access_token',
  'refreshToken',
  'refresh_token',
  'token',
  'apiKey',
  'secret',
  'code_verifier',
  'codeVerifier',
  'csrfToken',
  '*.password',
  '*.clientSecret',
  '*.client_secret',
  '*.accessToken',
  '*.access_token',
  '*.refreshToken',
  '*.refresh_token',
  '*.token',
  '*.apiKey',
  '*.secret',
  '*.csrfToken',
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-csrf-token"]',
  'res.headers["set-cookie"]',
];

export type { Logger };

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options: LoggerOptions = {
    level,
    base: { service: 'juniper' },
    redact: { paths: redactedPaths, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}

/** Log lines to stderr (file descriptor 2; pino flushes what is left at exit): a CLI command's results own stdout. */
export const stderrDestination = (): DestinationStream => pino.destination(2);

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/**
 * The id of one HTTP request in every log line it causes (`reqId`) and in the `x-request-id` answer header: the
 * caller's own `x-request-id` when it is a plain token (a proxy's or a client's, to follow a request across
 * systems), else a new random one. Anything else a client sends there is not trusted into the logs.
 */
export function requestIdOf(header: string | string[] | undefined): string {
  const given = Array.isArray(header) ? header[0] : header;
  return given !== undefined && REQUEST_ID.test(given) ? given : crypto.randomUUID();
}
