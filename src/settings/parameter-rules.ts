// System parameters as rules, without I/O: what each known key accepts, how its value is normalised, and
// the addresses derived from them. Known keys are validated so that routing never meets a domain like
// "not a domain"; any other key is a free parameter (scripts and later features keep their own there).
// Every error names the key and the rule, because the person reading it is usually looking at a form
// or a shell prompt, not at this file.
import { domainToASCII } from 'node:url';
import { AppError } from '../lib/errors.js';
import { parseAllowList } from '../mail-servers/host-policy.js';
import { DEFAULT_ALLOWED_PORTS, formatPortList, parsePortList } from '../mail-servers/port-policy.js';
import { graphHosts } from '../oauth/microsoft.js';

/** The largest mail.message.max_bytes: Exchange Online's own ceiling for a message (its default is 35 MB). */
export const MAX_MESSAGE_BYTES = 150 * 1024 * 1024;

export const KEY_PATTERN = /^[a-z0-9._-]{1,128}$/;
export const MAX_VALUE_LENGTH = 10_000;
export const DEFAULT_OUTLOOK_ENDPOINT = 'https://login.microsoftonline.com/common/oauth2/v2.0/';

export interface ParameterRule {
  /** One line for lists and forms. */
  readonly description: string;
  /** Stored form of the default; absent when the parameter has none. */
  readonly defaultValue?: string;
  /** Returns the stored form of a trimmed, non-empty value, or throws with the rule in words. */
  normalise(value: string, key: string): string;
}

// RFC 5322 dot-atom: what a local part may hold without quoting. Quoted local parts are legal but
// nobody names a notifications mailbox "john doe", and every MTA on the way would have to agree.
const ATEXT = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+";
const LOCAL_PART = new RegExp(`^${ATEXT}(?:\\.${ATEXT})*$`);
const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** A lower-case ASCII domain name (IDN converted to xn--), or undefined when it is not one. */
export function toDomainName(value: string): string | undefined {
  // eslint-disable-next-line no-control-regex -- non-ASCII means an IDN to convert, not a control check
  const ascii = /[^\x00-\x7f]/.test(value) ? domainToASCII(value) : value.toLowerCase();
  if (ascii === '' || ascii.length > 253) return undefined;
  const labels = ascii.split('.');
  if (labels.length < 2 || !labels.every((l) => LABEL.test(l))) return undefined;
  // An all-digit last label is an IP address, which a catch-all or a tenant can never be.
  return /[a-z]/.test(labels[labels.length - 1]!) ? ascii : undefined;
}

export function isLocalPart(value: string): boolean {
  return value.length <= 64 && LOCAL_PART.test(value);
}

/** `local@domain` with the domain lower-cased, or undefined. */
export function toEmailAddress(value: string): string | undefined {
  const at = value.lastIndexOf('@');
  if (at <= 0) return undefined;
  const local = value.slice(0, at);
  const domain = toDomainName(value.slice(at + 1));
  return isLocalPart(local) && domain ? `${local}@${domain}` : undefined;
}

/** "(got "…")" for error messages: quoted, escaped, and short enough to read. */
export function got(value: string): string {
  const shown = value.length > 80 ? `${value.slice(0, 77)}...` : value;
  return `(got ${JSON.stringify(shown)})`;
}

function invalid(key: string, rule: string, value: string): AppError {
  return new AppError('JUNIPER_ERR_INVALID_PARAMETER', `${key} must be ${rule} ${got(value)}`, { details: { key } });
}

const TRUE_WORDS = new Set(['true', '1', 'yes', 'on']);
const FALSE_WORDS = new Set(['false', '0', 'no', 'off']);

/** true/false for the words people type for a checkbox, undefined for anything else. */
export function parseBoolean(value: string): boolean | undefined {
  const word = value.trim().toLowerCase();
  return TRUE_WORDS.has(word) ? true : FALSE_WORDS.has(word) ? false : undefined;
}

function httpUrl(value: string, key: string, rule: string, allowHttp: (host: string) => boolean): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalid(key, rule, value);
  }
  // The raw text is checked as well: URL drops an empty "?" or "#" silently.
  const schemeOk = /^https?:\/\//i.test(value) && (url.protocol === 'https:' || (url.protocol === 'http:' && allowHttp(url.hostname)));
  if (!schemeOk || value.includes('?') || value.includes('#') || url.username !== '' || url.password !== '') {
    throw invalid(key, rule, value);
  }
  return url;
}

const localPartRule = (example: string): ParameterRule['normalise'] => (value, key) => {
  if (!isLocalPart(value)) {
    throw invalid(key, `the local part of an address (the part before the @), such as ${example}`, value);
  }
  return value;
};

export const knownParameters = {
  'web.base.url': {
    description: 'Public address of this Juniper, e.g. https://mail.example.com; OAuth redirect URIs are built from it.',
    normalise(value, key) {
      const url = httpUrl(value, key, 'an http:// or https:// address without ?query or #fragment, such as https://mail.example.com', () => true);
      // Redirect URIs are `<base>/microsoft_outlook/confirm`; a trailing slash would double it.
      return `${url.origin}${url.pathname}`.replace(/\/+$/, '');
    },
  },
  'mail.catchall.domain': {
    description: 'Domain of the notifications, bounce and catch-all addresses, e.g. example.com.',
    normalise(value, key) {
      const domain = toDomainName(value);
      if (!domain) throw invalid(key, 'a domain name such as example.com', value);
      return domain;
    },
  },
  'mail.default.from': {
    description: 'Notifications sender: a local part (combined with mail.catchall.domain) or a full address.',
    normalise(value, key) {
      if (value.includes('@')) {
        const address = toEmailAddress(value);
        if (!address) throw invalid(key, 'a local part such as notifications or an email address such as notifications@example.com', value);
        return address;
      }
      return localPartRule('notifications')(value, key);
    },
  },
  'mail.bounce.alias': {
    description: 'Local part of the bounce address (envelope sender), combined with mail.catchall.domain.',
    normalise: localPartRule('bounce'),
  },
  'mail.catchall.alias': {
    description: 'Local part of the catch-all address, combined with mail.catchall.domain.',
    normalise: localPartRule('catchall'),
  },
  'mass_mailing.outgoing_mail_server': {
    description: 'Send mass mailings through the dedicated server mass_mailing.mail_server_id (true/false).',
    defaultValue: 'false',
    normalise(value, key) {
      const flag = parseBoolean(value);
      if (flag === undefined) throw invalid(key, 'true or false (also accepted: yes/no, on/off, 1/0)', value);
      return String(flag);
    },
  },
  'mass_mailing.mail_server_id': {
    description: 'Id of the outgoing mail server used for mass mailings when the dedicated server is on.',
    normalise(value, key) {
      // Ids are database integers: at most 2^31 - 1 on PostgreSQL.
      if (!/^[1-9][0-9]{0,9}$/.test(value) || Number(value) > 2_147_483_647) {
        throw invalid(key, 'the id of an outgoing mail server (a positive whole number)', value);
      }
      return value;
    },
  },
  'mail.message.max_bytes': {
    description: 'Largest message Juniper accepts for sending, in bytes, attachments included (Microsoft 365 allows 35 MB after encoding by default, 150 MB at most); the API and the compose form take bodies of about 1.2 times this.',
    defaultValue: String(25 * 1024 * 1024),
    normalise(value, key) {
      if (!/^[1-9][0-9]{0,10}$/.test(value) || Number(value) < 1024 || Number(value) > MAX_MESSAGE_BYTES) {
        throw invalid(key, `a size in bytes from 1024 to ${MAX_MESSAGE_BYTES} (150 MB, Exchange Online's largest), such as 26214400 (25 MB)`, value);
      }
      return value;
    },
  },
  'mail.server.allowed_private_hosts': {
    description:
      'Private, loopback or link-local hosts that mail servers of users other than admins may reach: comma-separated host names, IP addresses and CIDR ranges (e.g. 127.0.0.1, 10.0.0.0/8, mail.internal).',
    normalise(value, key) {
      try {
        parseAllowList(value);
      } catch (e) {
        throw invalid(key, `comma-separated host names, IP addresses and CIDR ranges such as 127.0.0.1, 10.0.0.0/8, mail.internal: ${(e as Error).message}`, value);
      }
      return value
        .split(',')
        .map((entry) => entry.trim().toLowerCase())
        .filter((entry) => entry !== '')
        .join(', ');
    },
  },
  'mail.server.allowed_ports': {
    description:
      'Ports that mail servers of users other than admins may use: comma-separated ports and ranges (e.g. 25, 143, 465, 587, 993, 2525-2530); any other is refused before a connection, so the servers cannot scan ports.',
    defaultValue: DEFAULT_ALLOWED_PORTS,
    normalise(value, key) {
      let ports;
      try {
        ports = parsePortList(value);
      } catch (e) {
        throw invalid(key, `comma-separated ports and ranges such as ${DEFAULT_ALLOWED_PORTS}, 2525-2530: ${(e as Error).message}`, value);
      }
      if (ports.length === 0) throw invalid(key, `at least one port, such as ${DEFAULT_ALLOWED_PORTS}`, value);
      return formatPortList(ports);
    },
  },
  'mail.incoming.max_message_bytes': {
    description: 'Largest incoming message Juniper downloads, in bytes as the IMAP server counts them; a larger one is quarantined with its headers only.',
    // 40 MB: above Exchange Online's default receive limit (36 MB, counted encoded, as IMAP sizes are), so no
    // message a default Microsoft 365 mailbox accepts is cut; one message then costs ~3x that in memory while parsed.
    defaultValue: String(40 * 1024 * 1024),
    normalise(value, key) {
      if (!/^[1-9][0-9]{0,10}$/.test(value) || Number(value) < 1024) throw invalid(key, 'a size in bytes of at least 1024, such as 41943040 (40 MB)', value);
      return value;
    },
  },
  'microsoft_outlook.endpoint': {
    // No default here: unset, the authority follows the cloud and tenant in Settings (which start as
    // global/common, i.e. DEFAULT_OUTLOOK_ENDPOINT); listing a default would hide a US Gov or China choice.
    description: 'Microsoft identity platform authority incl. tenant; unset, it follows the cloud and tenant in Settings.',
    normalise(value, key) {
      // Plain http only for a test identity server on this machine: tokens and client secrets cross it.
      const url = httpUrl(
        value,
        key,
        'an https:// authority URL such as https://login.microsoftonline.com/common/oauth2/v2.0/ (http:// only on 127.0.0.1, localhost or [::1])',
        (host) => LOOPBACK_HOSTS.has(host),
      );
      // The authorize and token URLs are appended to it, so it ends in exactly one slash.
      return `${url.origin}${url.pathname}`.replace(/\/+$/, '') + '/';
    },
  },
  'microsoft_outlook.graph_endpoint': {
    // No default here either: unset, Graph's host follows the cloud (graph.microsoft.com, graph.microsoft.us,
    // microsoftgraph.chinacloudapi.cn). A US Government DoD tenant sets https://dod-graph.microsoft.us.
    description: 'Microsoft Graph endpoint Outlook servers send through when their transport is Graph; unset, it follows the cloud in Settings.',
    normalise(value, key) {
      // Access tokens are sent there: only Microsoft's Graph hosts over https, or a test Graph server on this
      // machine over http. Only the origin: Juniper appends /v1.0/..., so a service root with a path would double it.
      const url = httpUrl(value, key, `https://${[...graphHosts].join(', https://')} (http:// only on 127.0.0.1, localhost or [::1])`, (host) => LOOPBACK_HOSTS.has(host));
      if (url.protocol === 'https:' && !graphHosts.has(url.hostname)) throw invalid(key, `one of Microsoft Graph's endpoints: https://${[...graphHosts].join(', https://')}`, value);
      if (url.pathname !== '/') throw invalid(key, `the endpoint alone, without a path such as ${url.pathname} (Juniper adds /v1.0/...): ${url.origin}`, value);
      return url.origin;
    },
  },
  // Retention (issue 11, src/retention/retention.ts): unset keeps for ever.
  'retention.sent_mails.days': retentionRule('Days a finished outgoing mail (sent, failed, cancelled) is kept; unset: for ever.'),
  'retention.mail_bodies.days': retentionRule('Days the body and attachments of a sent outgoing mail are kept (the record stays; failed and cancelled mails keep theirs for a retry); unset: for ever.'),
  'retention.incoming_raw.days': retentionRule('Days the original .eml of a fetched message is kept (the parsed message stays); unset: for ever.'),
  'retention.quarantined.days': retentionRule('Days a quarantined incoming message is kept; unset: for ever.'),
  'retention.webhook_deliveries.days': retentionRule('Days a delivered or failed webhook delivery is kept (and how far back events are looked for); default 30.', '30'),
} as const satisfies Record<string, ParameterRule>;

function retentionRule(description: string, defaultValue?: string): ParameterRule {
  return {
    description,
    ...(defaultValue === undefined ? {} : { defaultValue }),
    normalise(value, key) {
      if (!/^[1-9][0-9]{0,5}$/.test(value)) throw invalid(key, 'a whole number of days of at least 1, such as 90', value);
      return value;
    },
  };
}

export type KnownParameterKey = keyof typeof knownParameters;

export function isKnownParameter(key: string): key is KnownParameterKey {
  return Object.hasOwn(knownParameters, key);
}

export function ruleOf(key: string): ParameterRule | undefined {
  return isKnownParameter(key) ? knownParameters[key] : undefined;
}

export function checkParameterKey(key: string): void {
  if (!KEY_PATTERN.test(key)) {
    throw new AppError(
      'JUNIPER_ERR_INVALID_PARAMETER',
      `A parameter key must be 1-128 lower-case letters, digits, dots, dashes or underscores ${got(key)}`,
      { details: { key } },
    );
  }
}

/** The stored form of a value, or JUNIPER_ERR_INVALID_PARAMETER naming the key and the rule. */
export function normaliseParameter(key: string, value: string): string {
  checkParameterKey(key);
  if (value.length > MAX_VALUE_LENGTH) {
    throw new AppError('JUNIPER_ERR_INVALID_PARAMETER', `${key} must be at most ${MAX_VALUE_LENGTH} characters (got ${value.length})`, {
      details: { key },
    });
  }
  // Parameters end up in headers and URLs; a line break there is header injection, not data.
  // eslint-disable-next-line no-control-regex -- control characters are exactly what this rejects
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) {
    throw new AppError('JUNIPER_ERR_INVALID_PARAMETER', `${key} must not contain line breaks or other control characters (tab is allowed)`, {
      details: { key },
    });
  }
  const rule = ruleOf(key);
  if (!rule) return value;
  const trimmed = value.trim();
  if (trimmed === '') {
    throw new AppError('JUNIPER_ERR_INVALID_PARAMETER', `${key} must not be empty; unset it instead to remove it`, { details: { key } });
  }
  return rule.normalise(trimmed, key);
}

/** Typed view of the known parameters, as routing and OAuth read them. */
export interface MailParameters {
  webBaseUrl: string | null;
  catchallDomain: string | null;
  defaultFrom: string | null;
  bounceAlias: string | null;
  catchallAlias: string | null;
  massMailingDedicatedServer: boolean;
  massMailingServerId: number | null;
  /** Only when set: unset means "derive the authority from the Outlook cloud and tenant settings". */
  outlookEndpoint: string | null;
  /** Only when set: unset means "Graph's host of the Outlook cloud". */
  graphEndpoint: string | null;
  maxMessageBytes: number;
}

/**
 * Typed values from stored strings. A stored value that no longer fits its rule (edited in SQL, or
 * stored before a rule tightened) counts as unset: a bad parameter must not stop every mail.
 */
export function toMailParameters(stored: ReadonlyMap<string, string>): MailParameters {
  const read = (key: KnownParameterKey): string | null => {
    const value = stored.get(key);
    if (value === undefined) return null;
    try {
      return normaliseParameter(key, value);
    } catch {
      return null;
    }
  };
  const serverId = read('mass_mailing.mail_server_id');
  return {
    webBaseUrl: read('web.base.url'),
    catchallDomain: read('mail.catchall.domain'),
    defaultFrom: read('mail.default.from'),
    bounceAlias: read('mail.bounce.alias'),
    catchallAlias: read('mail.catchall.alias'),
    massMailingDedicatedServer: read('mass_mailing.outgoing_mail_server') === 'true',
    massMailingServerId: serverId === null ? null : Number(serverId),
    outlookEndpoint: read('microsoft_outlook.endpoint'),
    graphEndpoint: read('microsoft_outlook.graph_endpoint'),
    maxMessageBytes: storedMaxMessageBytes(stored.get('mail.message.max_bytes')),
  };
}

/**
 * mail.message.max_bytes as stored. A value above MAX_MESSAGE_BYTES set before that ceiling existed counts as the
 * ceiling, not as unset: falling back to the 25 MB default would refuse mails the admin allowed.
 */
function storedMaxMessageBytes(value: string | undefined): number {
  const fallback = Number(knownParameters['mail.message.max_bytes'].defaultValue);
  if (value === undefined) return fallback;
  if (/^[1-9][0-9]{0,10}$/.test(value) && Number(value) > MAX_MESSAGE_BYTES) return MAX_MESSAGE_BYTES;
  try {
    return Number(normaliseParameter('mail.message.max_bytes', value));
  } catch {
    return fallback;
  }
}

type AddressParameters = Pick<MailParameters, 'catchallDomain' | 'defaultFrom' | 'bounceAlias' | 'catchallAlias'>;

const atCatchall = (local: string | null, params: AddressParameters): string | null =>
  local && params.catchallDomain ? `${local}@${params.catchallDomain}` : null;

/** The notifications address (DESIGN §4): mail.default.from verbatim if it has an @, else joined with the catch-all domain. */
export function defaultFromAddress(params: AddressParameters): string | null {
  if (params.defaultFrom?.includes('@')) return params.defaultFrom;
  return atCatchall(params.defaultFrom, params);
}

/** `mail.bounce.alias@mail.catchall.domain`, the envelope sender when a server's filter allows it. */
export function bounceAddress(params: AddressParameters): string | null {
  return atCatchall(params.bounceAlias, params);
}

/** `mail.catchall.alias@mail.catchall.domain`. */
export function catchallAddress(params: AddressParameters): string | null {
  return atCatchall(params.catchallAlias, params);
}
