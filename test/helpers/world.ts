// A populated Juniper for the attack tests (access matrix, CSRF, security headers): an admin and two users,
// jane (the owner of the fixtures) and john (another user), each with an API key and a browser session;
// Outlook credentials set; jane's personal outgoing and incoming servers (password and Outlook), her incoming
// server confirmed against a real Dovecot and fetched, so a message with an attachment and a thread exist.
// Every fixture is made the way an admin would (API key) so later rules for users (SSRF, capture) do not
// stop the set-up; fresh*() make throw-away resources for requests that change or archive them.
import assert from 'node:assert/strict';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import type { DialectName } from '../../src/db/database.js';
import { startDovecot, type Dovecot } from '../peers/dovecot.js';
import { freePort } from '../peers/free-port.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';
import { startTestApp, type TestApp } from './app.js';
import { signIn, type BrowserSession } from './outlook.js';

export const CLIENT_ID = '0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6';
export const CLIENT_SECRET = 'world-client-secret~Zx81.qLm0v9KrT2uWs4y';
export const MAILBOX = 'jane.box@example.test';
export const MAILBOX_PASSWORD = 'jane-box-imap-password-77';
export const SMTP_PASSWORD = 'jane-smtp-password-31';

export interface Person {
  id: number;
  login: string;
  email: string;
  password: string;
  apiKey: string;
  session: BrowserSession;
}

export interface World {
  t: TestApp;
  http: FastifyInstance;
  dovecot: Dovecot;
  idp: IdentityServer;
  admin: Person;
  jane: Person;
  john: Person;
  /** jane's fixtures. */
  ids: {
    outgoing: number;
    outgoingOutlook: number;
    incoming: number;
    incomingOutlook: number;
    message: number;
    attachment: number;
    thread: number;
  };
  /** A closed port on 127.0.0.1: Test Connection to it fails fast. */
  closedPort: number;
  as(person: Person | null, options: InjectOptions): Promise<LightMyRequestResponse>;
  freshOutgoing(owner: Person): Promise<number>;
  freshIncoming(owner: Person): Promise<number>;
  /** A queued mail enqueued by `sender` (as themselves). */
  freshMail(sender: Person): Promise<number>;
  close(): Promise<void>;
}

function message(): string {
  return [
    'From: "A customer" <customer@client.test>',
    `To: ${MAILBOX}`,
    'Subject: Order 1234',
    'Date: Tue, 04 Mar 2025 10:00:00 +0000',
    'Message-ID: <world-1@client.test>',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="mix"',
    '',
    '--mix',
    'Content-Type: multipart/alternative; boundary="alt"',
    '',
    '--alt',
    'Content-Type: text/plain; charset=utf-8',
    '',
    'Please confirm the order.',
    '--alt',
    'Content-Type: text/html; charset=utf-8',
    '',
    '<p>Please confirm the order.</p>',
    '--alt--',
    '--mix',
    'Content-Type: text/plain; name="order.txt"',
    'Content-Disposition: attachment; filename="order.txt"',
    '',
    'order 1234',
    '--mix--',
    '',
  ].join('\r\n');
}

export async function startWorld(dialect: DialectName): Promise<World> {
  const idp = await startIdentityServer();
  const [dovecot, t, closedPort] = await Promise.all([startDovecot({ identityUrl: idp.url, users: { [MAILBOX]: MAILBOX_PASSWORD } }), startTestApp(dialect), freePort()]);
  const http = await t.app.http();
  const person = async (login: string, role: 'admin' | 'user'): Promise<Person> => {
    const u = await t.createUser(login, role);
    return { id: u.id, login, email: `${login}@example.com`, password: u.password, apiKey: u.apiKey, session: await signIn(http, login, u.password) };
  };
  const admin = await person('admin', 'admin');
  const jane = await person('jane', 'user');
  const john = await person('john', 'user');

  const as = (p: Person | null, options: InjectOptions) =>
    http.inject({ ...options, headers: { ...(p ? { authorization: `Bearer ${p.apiKey}` } : {}), ...(options.headers ?? {}) } });
  const adminCall = async (method: 'POST' | 'PUT', url: string, payload?: object) => {
    const res = await as(admin, { method, url, payload });
    assert.ok(res.statusCode < 300, `${method} ${url}: ${res.statusCode} ${res.body}`);
    return res.body ? res.json<Record<string, unknown>>() : {};
  };

  await t.app.services.parameters.set('web.base.url', 'http://localhost', cliActor);
  // Users' servers here point at loopback peers and at a documentation address (never connected): the admin's allow-list is the documented way.
  await t.app.services.parameters.set('mail.server.allowed_private_hosts', '127.0.0.1, 203.0.113.10', cliActor);
  // And their ports, which the system picked: the admin allows those two besides the mail ports, as an admin would a relay's own port.
  await t.app.services.parameters.set('mail.server.allowed_ports', `25, 143, 465, 587, 993, 2525, ${closedPort}, ${dovecot.imapsPort}`, cliActor);
  await t.app.services.parameters.set('microsoft_outlook.endpoint', `${idp.url}/common/oauth2/v2.0/`, cliActor);
  await adminCall('PUT', '/api/v1/settings', { customEmailServers: true, outlook: { enabled: true, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET } });

  const freshOutgoing = async (owner: Person) =>
    (await adminCall('POST', '/api/v1/outgoing-servers', {
      name: `${owner.login} smtp`, host: '127.0.0.1', port: closedPort, security: 'none', auth: 'password', username: owner.email, password: SMTP_PASSWORD, fromFilter: owner.email, ownerUserId: owner.id,
    })).id as number;
  const freshIncoming = async (owner: Person) =>
    (await adminCall('POST', '/api/v1/incoming-servers', {
      name: `${owner.login} imap`, host: '127.0.0.1', port: dovecot.imapsPort, security: 'ssl', allowSelfSigned: true, auth: 'password', username: MAILBOX, password: MAILBOX_PASSWORD, keepOriginal: true, ownerUserId: owner.id,
    })).id as number;
  const freshMail = async (sender: Person) => {
    const res = await as(sender, { method: 'POST', url: '/api/v1/mails', payload: { from: sender.email, to: ['customer@client.test'], subject: 'fixture', text: 'x' } });
    assert.equal(res.statusCode, 202, res.body);
    return res.json<{ id: number }>().id;
  };

  const outgoing = await freshOutgoing(jane);
  const outgoingOutlook = (await adminCall('POST', '/api/v1/outgoing-servers', { name: 'jane outlook', auth: 'outlook', username: jane.email, host: '127.0.0.1', port: closedPort, ownerUserId: jane.id })).id as number;
  const incoming = await freshIncoming(jane);
  const incomingOutlook = (await adminCall('POST', '/api/v1/incoming-servers', { name: 'jane outlook in', auth: 'outlook', username: jane.email, host: '127.0.0.1', port: closedPort, ownerUserId: jane.id })).id as number;
  await dovecot.deliver(MAILBOX, message());
  const tested = await adminCall('POST', `/api/v1/incoming-servers/${incoming}/test`);
  assert.equal(tested.ok, true, JSON.stringify(tested));
  await adminCall('POST', `/api/v1/incoming-servers/${incoming}/fetch?wait=true`);
  const listed = (await as(admin, { url: `/api/v1/messages?serverId=${incoming}` })).json<{ id: number; threadId: number }[]>();
  assert.equal(listed.length, 1, 'the fixture message was fetched');
  const detail = (await as(admin, { url: `/api/v1/messages/${listed[0]!.id}` })).json<{ attachments: { id: number }[] }>();
  assert.ok(detail.attachments[0], 'the fixture message has an attachment');

  return {
    t,
    http,
    dovecot,
    idp,
    admin,
    jane,
    john,
    ids: { outgoing, outgoingOutlook, incoming, incomingOutlook, message: listed[0]!.id, attachment: detail.attachments[0].id, thread: listed[0]!.threadId },
    closedPort,
    as,
    freshOutgoing,
    freshIncoming,
    freshMail,
    async close() {
      await t.close();
      await dovecot.stop();
      await idp.stop();
    },
  };
}
