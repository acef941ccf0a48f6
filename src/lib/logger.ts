// One pino logger for the process. Secrets must never reach a log line: the redaction list covers every
// field name under which a secret could travel (request headers, bodies, our own objects).
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
