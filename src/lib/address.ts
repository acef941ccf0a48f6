// One mailbox out of a From or Reply-To header value, for routing and display. Matching uses the
// normalised addr-spec (lower-cased, IDN domains in their xn-- form) and never the display name, so
// '"jane@example.com" <bob@example.com>' is bob wherever a decision depends on it (DESIGN §4).
// Parsing is nodemailer's: it composes the headers we send, so what we route on is what it sends.
import addressparser from 'nodemailer/lib/addressparser';
import { toDomainName } from '../settings/parameter-rules.js';

export interface Mailbox {
  /** Display name, unescaped; '' when there is none. RFC 2047 encoded words stay encoded. */
  name: string;
  /** The addr-spec as written (case kept, for display and the envelope); match on normaliseAddress. */
  address: string;
}

// RFC 5322 atext plus any non-ASCII character (RFC 6532): what an atom may hold without quotes.
const ATOM = "(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]|[^\\x00-\\x7f\\s])+";
const DOT_ATOM = new RegExp(`^${ATOM}(?:\\.${ATOM})*$`, 'u');
const QUOTED_STRING = /^"(?:[^"\\]|\\.)*"$/u;
const PHRASE = new RegExp(`^${ATOM}(?: +${ATOM})*$`, 'u');
// A dot-atom of ASCII atext, one '@', a domain of letters, digits, '-' and '.': no character addressparser treats
// as anything but text (quotes, comments, angle brackets, list and group separators, literals, spaces).
const PLAIN_ADDR_SPEC = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+$/;
// A display name made of RFC 2047 encoded words only: quoting it would stop mail clients decoding it.
const ENCODED_WORDS = /^=\?[^?\s]+\?[BbQq]\?[^?\s]*\?=(?:\s+=\?[^?\s]+\?[BbQq]\?[^?\s]*\?=)*$/;
// eslint-disable-next-line no-control-regex -- control characters are what a header line must not carry
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]+/g;

/**
 * A header value as one safe line: CR, LF and other control characters become spaces (a folded
 * header unfolds, an injected "\r\nBcc: …" can no longer start a header of its own), then trimmed.
 */
export function toHeaderLine(value: string): string {
  return value.replace(CONTROL, ' ').trim();
}

/** The part after the last '@' ('' when there is none); the last, because a quoted local part may hold one. */
export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1);
}

/** The part before the last '@' (the whole value when there is none), quotes included. */
export function localPartOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? address : address.slice(0, at);
}

function isAddrSpec(address: string): boolean {
  const at = address.lastIndexOf('@');
  if (at <= 0 || address.length > 254) return false;
  const local = address.slice(0, at);
  // A domain literal ([1.2.3.4]) fails here on purpose: routing needs a domain to match filters on.
  return local.length <= 64 && (DOT_ATOM.test(local) || QUOTED_STRING.test(local)) && toDomainName(domainOf(address)) !== undefined;
}

/**
 * Exactly one mailbox, or undefined: empty values, lists, groups, a name without an address and
 * addresses that are not `local@domain` all count as unparsable rather than as a guess.
 */
export function parseMailbox(value: string): Mailbox | undefined {
  const line = toHeaderLine(value);
  if (line === '') return undefined;
  // The everyday value, a bare `local@domain` of atext and LDH labels, is what addressparser makes of it,
  // unchanged and with no name (a test compares both over generated addresses); parsing it costs 5 µs a call,
  // and a mail's addresses are parsed several times between the API and the SMTP envelope.
  if (isPlainAddrSpec(line)) return isAddrSpec(line) ? { name: '', address: line } : undefined;
  return parseWithAddressparser(line);
}

/** A header line that addressparser reads as one address, itself, with no name (see PLAIN_ADDR_SPEC). */
export function isPlainAddrSpec(line: string): boolean {
  return PLAIN_ADDR_SPEC.test(line);
}

/** parseMailbox without the short way for plain addresses: the reference the short way is tested against. */
export function parseWithAddressparser(value: string): Mailbox | undefined {
  const line = toHeaderLine(value);
  if (line === '') return undefined;
  const entries = addressparser(line);
  if (entries.length !== 1) return undefined;
  const entry = entries[0]!;
  if (entry.group !== undefined) return undefined;
  const address = entry.address.trim();
  if (!isAddrSpec(address)) return undefined;
  return { name: toHeaderLine(entry.name), address };
}

/** The addr-spec as routing compares it: local part lower-cased, domain lower-case ASCII; undefined when unparsable. */
export function normaliseAddress(value: string): string | undefined {
  const mailbox = parseMailbox(value);
  if (!mailbox) return undefined;
  const domain = toDomainName(domainOf(mailbox.address));
  return domain === undefined ? undefined : `${localPartOf(mailbox.address).toLowerCase()}@${domain}`;
}

export interface FormatOptions {
  /**
   * Quote every plain display name, not only those RFC 5322 requires to be quoted: routing writes
   * `"John Doe" <notifications@example.com>` as DESIGN §4 spells it. Encoded words are never quoted.
   */
  alwaysQuote?: boolean;
}

/**
 * `name <address>`, the name quoted when RFC 5322 needs it (specials such as `@ , . " <`), with `"`
 * and `\` escaped; a bare address when the name is empty. Non-ASCII names are left as they are for
 * nodemailer to encode (RFC 2047) when it writes the header.
 */
export function formatMailbox(mailbox: Mailbox, options: FormatOptions = {}): string {
  const name = toHeaderLine(mailbox.name);
  if (name === '') return mailbox.address;
  if (ENCODED_WORDS.test(name) || (!options.alwaysQuote && PHRASE.test(name))) return `${name} <${mailbox.address}>`;
  return `"${name.replace(/["\\]/g, '\\$&')}" <${mailbox.address}>`;
}
