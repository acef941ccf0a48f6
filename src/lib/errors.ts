// One catalogue of every error Juniper reports: a stable code, the HTTP status it maps to, and a default
// human message. Messages say what failed and what to do; callers add specifics (which server, which key).
// docs/errors.md is generated from this table and a test keeps the two in step.

export const errorCatalogue = {
  JUNIPER_ERR_VALIDATION: { status: 400, message: 'The request is not valid.' },
  JUNIPER_ERR_NOT_FOUND: { status: 404, message: 'Not found.' },
  JUNIPER_ERR_TOO_LARGE: { status: 413, message: 'The message or the request body is larger than the configured limit.' },
  JUNIPER_ERR_CONFLICT: { status: 409, message: 'This conflicts with existing data.' },
  JUNIPER_ERR_IDEMPOTENCY_KEY_REUSED: {
    status: 422,
    message: 'This Idempotency-Key was already used with a different request: use a new key for a new mail.',
  },
  JUNIPER_ERR_UNAUTHENTICATED: { status: 401, message: 'Sign in or send an API key (Authorization: Bearer <key>).' },
  JUNIPER_ERR_FORBIDDEN: { status: 403, message: 'You are not allowed to do this.' },
  JUNIPER_ERR_CSRF: {
    status: 403,
    message: 'Missing or wrong CSRF token: send the csrfToken from POST /api/v1/session in the x-csrf-token header.',
  },
  JUNIPER_ERR_BAD_CREDENTIALS: { status: 401, message: 'Wrong login or password.' },
  JUNIPER_ERR_SETUP_TOKEN: {
    status: 403,
    message: 'This setup link is not the latest one Juniper printed: use the newest link on the console (each start prints a new one while no admin exists).',
  },
  JUNIPER_ERR_UNKNOWN_PARAMETER: { status: 404, message: 'No such system parameter.' },
  JUNIPER_ERR_INVALID_PARAMETER: { status: 400, message: 'The value does not fit the parameter.' },
  JUNIPER_ERR_HOST_NOT_ALLOWED: {
    status: 400,
    message: 'A mail server of a user other than an admin may only reach public addresses; an admin can permit others in mail.server.allowed_private_hosts.',
  },
  JUNIPER_ERR_PORT_NOT_ALLOWED: {
    status: 400,
    message:
      'A mail server of a user other than an admin may only use the mail ports (25, 143, 465, 587, 993, 2525 unless an admin changed them in mail.server.allowed_ports): use 587 or 993, or ask an admin to add the port.',
  },
  JUNIPER_ERR_SERVER_CREDENTIALS: { status: 400, message: 'The mail server has incomplete credentials.' },
  JUNIPER_ERR_OUTLOOK_NOT_CONNECTED: {
    status: 409,
    message: 'The server has no Outlook token: click Connect your Outlook account.',
  },
  JUNIPER_ERR_OUTLOOK_CREDENTIALS: {
    status: 409,
    message: 'Configure your Outlook credentials first: Settings → Custom Email Servers → Outlook Credentials (Client ID and Client Secret).',
  },
  JUNIPER_ERR_OUTLOOK_NEEDS_RECONNECT: {
    status: 409,
    message: 'The Outlook account of this server must be reconnected: click Connect your Outlook account.',
  },
  JUNIPER_ERR_OUTLOOK_IN_USE: {
    status: 409,
    message: 'Microsoft Outlook cannot be uninstalled while mail servers sign in with it: switch them off Outlook or archive them, then uninstall.',
  },
  JUNIPER_ERR_OAUTH_STATE: {
    status: 403,
    message: 'This Microsoft sign-in answer does not belong to a sign-in you started; go back to the server and click Connect your Outlook account again.',
  },
  JUNIPER_ERR_OAUTH_DENIED: { status: 400, message: 'Microsoft did not grant access.' },
  JUNIPER_ERR_IMAP: {
    status: 502,
    message: 'The IMAP server could not be reached or refused the request; the message quotes its reply and says what to check.',
  },
  JUNIPER_ERR_IMAP_AUTH: {
    status: 502,
    message: 'The IMAP server refused the login: check the username and password, or reconnect the Outlook account.',
  },
  JUNIPER_ERR_SETUP_INCOMPLETE: { status: 409, message: 'Juniper is missing a setting this needs.' },
  JUNIPER_ERR_CONFIG: { status: 500, message: 'Juniper is not configured correctly.' },
  JUNIPER_ERR_VAULT_KEY: {
    status: 500,
    message: 'A secret cannot be decrypted with the configured key.',
  },
  JUNIPER_ERR_DATABASE: { status: 500, message: 'The database failed.' },
  JUNIPER_ERR_OAUTH_TOKEN_UNAVAILABLE: {
    status: 503,
    message: 'No OAuth2 access token could be obtained for this mail server: reconnect its Outlook account, or wait if the identity provider was unreachable.',
  },
  JUNIPER_ERR_OAUTH: {
    status: 502,
    message: 'Microsoft refused the OAuth request or could not be reached; the details name the error and what to do.',
  },
  JUNIPER_ERR_SEND_DEADLINE: {
    status: 504,
    message: 'The outgoing mail server did not finish a send within its deadline; the mail is retried later.',
  },
  JUNIPER_ERR_SEND_CANCELLED: {
    status: 503,
    message: 'Juniper stopped a send to a stalled outgoing mail server; the mail goes back to the queue.',
  },
  JUNIPER_ERR_RATE_LIMITED: { status: 429, message: 'Too many attempts; wait a minute and try again.' },
  JUNIPER_ERR_INTERNAL: { status: 500, message: 'Internal error; the log has the details.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof errorCatalogue;

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra machine-readable facts (e.g. which field failed); never secrets. */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message ?? errorCatalogue[code].message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = errorCatalogue[code].status;
    this.details = options?.details;
  }
}

export function isAppError(e: unknown): e is AppError {
  return e instanceof AppError;
}

/** What an API error body says: `{ error: errorBody(err) }`. */
export interface ErrorBody {
  code: string;
  message: string;
  /** The input that failed (a body field such as `to` or `mails.3.subject`, or a header such as `Idempotency-Key`), when one did. */
  field?: string;
}

/**
 * The error as the API answers it. The message says what failed in words; `field` lets a script or a form put
 * it beside the input at fault: the field an error names, else the first path zod found wrong.
 */
export function errorBody(err: AppError): ErrorBody {
  const body: ErrorBody = { code: err.code, message: err.message };
  const field = err.details?.field;
  const issues = err.details?.issues;
  const firstPath = Array.isArray(issues) ? (issues[0] as { path?: unknown } | undefined)?.path : undefined;
  if (typeof field === 'string' && field) body.field = field;
  else if (typeof firstPath === 'string' && firstPath) body.field = firstPath;
  return body;
}
