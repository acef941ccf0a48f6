// Issue 13 end to end: an Outlook server sends through Microsoft Graph when its tenant turns SMTP AUTH off.
// Real peers: the identity server (tokens per resource from one consent), the SMTP sink answering Microsoft's
// 535 5.7.139, and a Graph-shaped server that checks each token's audience and scopes at the identity server.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { simpleParser } from 'mailparser';
import { cliActor } from '../../src/audit/audit-log.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { connectOutlook, signIn, type BrowserSession } from '../helpers/outlook.js';
import { testDispatcher, type TestDispatcher } from '../helpers/outgoing.js';
import { Dispatcher, defaultDispatcherOptions } from '../../src/outgoing/dispatcher.js';
import { createSmtpTransport } from '../../src/outgoing/smtp-transport.js';
import { TransportPool } from '../../src/outgoing/transport-pool.js';
import { startGraphServer, type GraphServer } from '../peers/graph-server.js';
import { GRAPH_AUDIENCE } from '../peers/identity-protocol.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

const CLIENT_ID = '6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
const CLIENT_SECRET = 'graph-client-secret~0123456789abcdefghij';
const MAILBOX = 'sales@example.test';
const SHARED = 'orders@example.test';

interface Mail {
  state: string;
  failureType: string | null;
  failureReason: string | null;
  smtpResponse: string | null;
  nextAttemptAt: string | null;
  messageId: string;
}

for (const dialect of dialects) {
  describe(`Graph sending (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let idp: IdentityServer;
    let sink: SmtpSink;
    let graph: GraphServer;
    let d: TestDispatcher;
    let admin: BrowserSession;
    let serverId: number;

    const api = async (method: 'GET' | 'POST' | 'PUT' | 'PATCH', url: string, payload?: object) => {
      const res = await http.inject({ method, url, payload, headers: { cookie: admin.cookie, 'x-csrf-token': admin.csrfToken } });
      return { status: res.statusCode, body: res.json<Record<string, unknown>>(), text: res.body };
    };
    const send = async (mail: Record<string, unknown>): Promise<number> => {
      const res = await api('POST', '/api/v1/mails', { from: MAILBOX, to: ['customer@client.test'], subject: 'Hello', text: 'Hi there', ...mail });
      assert.equal(res.status, 202, res.text);
      return res.body.id as number;
    };
    const mail = async (id: number) => (await api('GET', `/api/v1/mails/${id}`)).body as unknown as Mail;
    const serverView = async () => (await api('GET', `/api/v1/outgoing-servers/${serverId}`)).body as { transport: string; activeTransport: string; transportSwitch: { at: string; reason: string } | null };

    before(async () => {
      idp = await startIdentityServer();
      sink = await startSmtpSink({ auth: 'xoauth2', identityUrl: idp.url, tls: 'starttls' });
      graph = await startGraphServer({ identityUrl: idp.url });
      t = await startTestApp(dialect);
      http = await t.app.http();
      const user = await t.createUser('admin', 'admin');
      admin = await signIn(http, 'admin', user.password);
      const params = t.app.services.parameters;
      await params.set('web.base.url', 'https://juniper.example.com', cliActor);
      await params.set('microsoft_outlook.endpoint', `${idp.url}/common/oauth2/v2.0/`, cliActor);
      await params.set('microsoft_outlook.graph_endpoint', graph.url, cliActor);
      const settings = await api('PUT', '/api/v1/settings', { customEmailServers: true, outlook: { enabled: true, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET } });
      assert.equal(settings.status, 200, settings.text);
      const created = await api('POST', '/api/v1/outgoing-servers', {
        name: 'Sales',
        auth: 'outlook',
        username: MAILBOX,
        host: '127.0.0.1',
        port: sink.port,
        allowSelfSigned: true,
        ratePerMinute: 0,
        fromFilter: `${MAILBOX}, ${SHARED}`,
      });
      assert.equal(created.status, 201, created.text);
      serverId = created.body.id as number;
      assert.equal((await connectOutlook(http, admin, 'outgoing', serverId)).statusCode, 303);
      d = testDispatcher(t.app);
    });
    after(async () => {
      await d.close();
      await t.close();
      await graph.stop();
      await sink.stop();
      await idp.stop();
    });

    it('a new Outlook server is auto and sends by SMTP while SMTP AUTH works', async () => {
      const s = await serverView();
      assert.equal(s.transport, 'auto');
      assert.equal(s.activeTransport, 'smtp');
      const id = await send({ subject: 'by smtp' });
      await d.drain();
      assert.equal((await mail(id)).state, 'sent');
      assert.equal(sink.messages.length, 1);
      assert.equal(graph.messages.length, 0);
    });

    it('on 535 5.7.139 the auto server moves to Graph, and every queued mail arrives once, From, Reply-To and Bcc as SMTP would send them', async () => {
      sink.setAuthDisabled(true);
      // Pooled connections authenticated earlier would go on sending: Exchange's refusal comes at the next AUTH.
      sink.dropConnections();
      const ids = [];
      for (let i = 0; i < 5; i++) ids.push(await send({ subject: `switch ${i}`, cc: ['cc@client.test'], bcc: [`hidden${i}@client.test`], replyTo: 'replies@example.test' }));
      await d.drain();
      for (const id of ids) {
        const m = await mail(id);
        assert.equal(m.state, 'sent', JSON.stringify(m));
        assert.match(m.smtpResponse ?? '', /Accepted by Microsoft Graph/);
      }
      assert.equal(sink.messages.length, 1, 'nothing more went by SMTP');
      assert.equal(graph.messages.length, 5);
      const s = await serverView();
      assert.equal(s.transport, 'auto');
      assert.equal(s.activeTransport, 'graph');
      assert.match(s.transportSwitch?.reason ?? '', /5\.7\.139/);
      const bySubject = new Map<string, Awaited<ReturnType<typeof simpleParser>>>();
      for (const m of graph.messages) {
        assert.equal(m.mailbox, MAILBOX);
        assert.equal(m.sendAs, null, 'sent as the mailbox itself: /me/sendMail');
        const parsed = await simpleParser(m.raw);
        bySubject.set(parsed.subject ?? '', parsed);
      }
      for (let i = 0; i < 5; i++) {
        const parsed = bySubject.get(`switch ${i}`);
        assert.ok(parsed, `switch ${i} arrived`);
        assert.equal(parsed.from?.text, MAILBOX);
        assert.equal(parsed.replyTo?.text, 'replies@example.test');
        assert.equal(parsed.to && !Array.isArray(parsed.to) ? parsed.to.text : '', 'customer@client.test');
        assert.equal(parsed.bcc && !Array.isArray(parsed.bcc) ? parsed.bcc.text : '', `hidden${i}@client.test`, 'Graph reads Bcc from the MIME');
        assert.equal(parsed.messageId, (await mail(ids[i]!)).messageId, 'the Message-ID Juniper gave the mail');
      }
      // The switch is audited, and said in the log once.
      const audit = await t.app.database.db.selectFrom('audit_log').select(['action']).where('action', '=', 'outgoing_server.transport_switch').execute();
      assert.equal(audit.length, 1);
    });

    it('never sends an Outlook token to Graph, nor a Graph token to SMTP', () => {
      assert.ok(graph.requests.length >= 5, JSON.stringify(graph.requests));
      for (const r of graph.requests) assert.equal(r.aud, GRAPH_AUDIENCE, `${r.method} ${r.path} carried ${r.aud}`);
      const granted = idp.tokenRequests.filter((r) => r.status === 200 && r.grantType === 'refresh_token');
      assert.ok(granted.some((r) => r.aud === GRAPH_AUDIENCE), `a Graph token was redeemed from the Outlook consent: ${JSON.stringify(idp.tokenRequests)}`);
    });

    it('429 with Retry-After is retried after that wait, and the server sends nothing else until then', async () => {
      graph.failNext({ status: 429, headers: { 'retry-after': '40' }, body: { error: { code: 'ApplicationThrottled', message: 'Application is over its MailboxConcurrency limit.' } } });
      const id = await send({ subject: 'throttled' });
      await d.drain();
      const waiting = await mail(id);
      assert.equal(waiting.state, 'queued');
      assert.equal(waiting.failureType, 'quota');
      assert.match(waiting.failureReason ?? '', /ApplicationThrottled/);
      const wait = Date.parse(waiting.nextAttemptAt ?? '') - Date.now();
      assert.ok(wait > 38_000 && wait <= 41_000, `next attempt in ${wait} ms`);
      // A mail queued meanwhile waits for the same moment instead of meeting the same 429 (no attempt used).
      const before = graph.requests.length;
      const next = await send({ subject: 'behind the throttled one' });
      await d.drain();
      const behind = (await api('GET', `/api/v1/mails/${next}`)).body as { state: string; attempts: number; waitingReason: string | null };
      assert.equal(behind.state, 'queued');
      assert.match(behind.waitingReason ?? '', /Throttled: Microsoft asked outgoing server "Sales" to send nothing until/);
      assert.equal(graph.requests.length, before, 'nothing was sent while paused');
      d.advance(41_000);
      await d.drain();
      assert.equal((await mail(id)).state, 'sent');
      assert.equal((await mail(next)).state, 'sent');
    });

    it('a token Graph refuses before its expiry is renewed once and the mail sent with the new one', async () => {
      const refreshes = () => idp.tokenRequests.filter((r) => r.grantType === 'refresh_token' && r.aud === GRAPH_AUDIENCE).length;
      const before = refreshes();
      graph.failNext({ status: 401, body: { error: { code: 'InvalidAuthenticationToken', message: 'Access token validation failure.' } } });
      const id = await send({ subject: 'renewed' });
      await d.drain();
      assert.equal((await mail(id)).state, 'sent');
      assert.equal(refreshes(), before + 1, 'one fresh Graph token');
    });

    it('a Graph that hangs is given up after the timeout and the mail retried, not lost', async () => {
      const pool = new TransportPool((x) => t.app.services.outgoingServers.password(x), t.app.services.tokens, t.app.services.outgoingServers.hostGuard, createSmtpTransport, { endpoint: () => t.app.services.settings.graphEndpoint(), timeoutMs: 300 });
      const hurried = new Dispatcher({ queue: t.app.services.queue, servers: t.app.services.outgoingServers, parameters: t.app.services.parameters, transports: pool, log: t.app.logger, owner: 'hurried-worker' }, { ...defaultDispatcherOptions, pollMs: 50 });
      graph.setHang(true);
      try {
        const id = await send({ subject: 'hung' });
        await hurried.runOnce();
        const m = await mail(id);
        assert.equal(m.state, 'queued');
        assert.equal(m.failureType, 'timeout');
        assert.match(m.failureReason ?? '', /did not answer within 0\.3 s.*may arrive twice/);
        // The abandoned request reaches nobody once the peer has seen the client hang up (else it would deliver
        // it, as Graph might: the reason says the mail may then arrive twice).
        for (let i = 0; i < 100 && graph.heldRequests > 0; i++) await new Promise((r) => setTimeout(r, 20));
        assert.equal(graph.heldRequests, 0);
      } finally {
        graph.setHang(false);
        await hurried.stop();
      }
      d.advance(10 * 60_000);
      await d.drain();
      assert.equal(graph.messages.filter((m) => m.raw.includes('Subject: hung')).length, 1, 'sent once Graph answers again, and once only');
    });

    it('a raw .eml goes through Graph as it is, with a Bcc header for its hidden recipients, and its own Bcc header never over SMTP', async () => {
      const eml = ['From: Sales <sales@example.test>', 'To: customer@client.test', 'Bcc: secret@client.test', 'Subject: raw one', 'Message-ID: <raw-graph-1@example.test>', '', 'Raw body', ''].join('\r\n');
      const { id } = await t.app.services.outbox.enqueueRaw(Buffer.from(eml), {}, null, cliActor);
      await d.drain();
      assert.equal((await mail(id)).state, 'sent');
      const sent = graph.messages.at(-1)!;
      assert.equal(sent.raw.toString(), ['Bcc: secret@client.test', 'From: Sales <sales@example.test>', 'To: customer@client.test', 'Subject: raw one', 'Message-ID: <raw-graph-1@example.test>', '', 'Raw body', ''].join('\r\n'));
    });

    it('5xx is transient; a 4xx fails with Graph\'s code and message kept on the mail', async () => {
      graph.failNext({ status: 503, body: { error: { code: 'ServiceUnavailable', message: 'Service unavailable.' } } });
      const retried = await send({ subject: 'unavailable' });
      await d.drain();
      assert.equal((await mail(retried)).state, 'queued');
      assert.equal((await mail(retried)).failureType, 'graph_temporary');
      d.advance(10 * 60_000);
      await d.drain();
      assert.equal((await mail(retried)).state, 'sent');

      graph.failNext({ status: 400, body: { error: { code: 'ErrorInvalidRecipients', message: 'At least one recipient is not valid.' } } });
      const refused = await send({ subject: 'bad recipient' });
      await d.drain();
      const m = await mail(refused);
      assert.equal(m.state, 'failed');
      assert.equal(m.failureType, 'invalid_address');
      assert.match(m.failureReason ?? '', /400 \(ErrorInvalidRecipients: At least one recipient is not valid\.\)/);
    });

    it('a message over Graph\'s 4 MB request limit fails before sending, saying why and what to do', async () => {
      const before = graph.requests.length;
      const id = await send({ subject: 'big', attachments: [{ filename: 'big.bin', contentType: 'application/octet-stream', contentBase64: Buffer.alloc(3_500_000, 7).toString('base64') }] });
      await d.drain();
      const m = await mail(id);
      assert.equal(m.state, 'failed');
      assert.equal(m.failureType, 'too_large');
      assert.match(m.failureReason ?? '', /at most 4 MB per sendMail request/);
      assert.match(m.failureReason ?? '', /transport smtp/);
      assert.equal(graph.requests.length, before, 'nothing was sent');
    });

    it('sending as another mailbox uses /users/{address}/sendMail and explains Send As when refused', async () => {
      const denied = await send({ from: SHARED, subject: 'as orders' });
      await d.drain();
      const m = await mail(denied);
      assert.equal(m.state, 'failed');
      assert.equal(m.failureType, 'sender_refused');
      assert.match(m.failureReason ?? '', /ErrorSendAsDenied/);
      assert.match(m.failureReason ?? '', new RegExp(`grant ${MAILBOX} Send As`));
      graph.grantSendAs(MAILBOX, SHARED);
      assert.equal((await api('POST', `/api/v1/mails/${denied}/retry`)).status, 200);
      await d.drain();
      assert.equal((await mail(denied)).state, 'sent');
      const last = graph.messages.at(-1)!;
      assert.equal(last.sendAs, SHARED);
      assert.equal(last.path, `/v1.0/users/${encodeURIComponent(SHARED)}/sendMail`);
    });

    it('Test Connection on the Graph server checks the token with GET /me and names the account', async () => {
      const res = await api('POST', `/api/v1/outgoing-servers/${serverId}/test`);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body.ok, true, res.text);
      assert.match(String(res.body.message), new RegExp(`signed in as ${MAILBOX}`));
      assert.ok(graph.requests.some((r) => r.method === 'GET' && r.path === '/v1.0/me'));
    });

    it('Test Connection on an auto server whose tenant refuses SMTP AUTH tests Graph and moves the server to it', async () => {
      const created = await api('POST', '/api/v1/outgoing-servers', { name: 'Sales 2', auth: 'outlook', username: MAILBOX, host: '127.0.0.1', port: sink.port, allowSelfSigned: true, ratePerMinute: 0, priority: 50 });
      assert.equal(created.status, 201, created.text);
      const id = created.body.id as number;
      assert.equal((await connectOutlook(http, admin, 'outgoing', id)).statusCode, 303);
      sink.setAuthDisabled([MAILBOX]);
      const res = await api('POST', `/api/v1/outgoing-servers/${id}/test`);
      assert.equal(res.body.ok, true, res.text);
      assert.match(String(res.body.message), /SMTP AUTH is disabled for this mailbox \(535 5\.7\.139 .*disabled for the Mailbox.*now sends through Microsoft Graph/);
      const view = (await api('GET', `/api/v1/outgoing-servers/${id}`)).body as { activeTransport: string; transportSwitch: { reason: string } | null };
      assert.equal(view.activeTransport, 'graph');
      assert.match(view.transportSwitch?.reason ?? '', /at Test Connection/);
      sink.setAuthDisabled(false);
      assert.equal((await api('PATCH', `/api/v1/outgoing-servers/${id}`, { active: false })).status, 200);
    });

    it('naming the transport again tries SMTP again; transport graph sends through Graph whatever SMTP says', async () => {
      sink.setAuthDisabled(false);
      assert.equal((await api('PATCH', `/api/v1/outgoing-servers/${serverId}`, { transport: 'auto' })).status, 200);
      assert.equal((await serverView()).activeTransport, 'smtp');
      const bySmtp = await send({ subject: 'smtp again' });
      await d.drain();
      assert.equal((await mail(bySmtp)).state, 'sent');
      assert.equal(sink.messages.at(-1)?.raw.includes('smtp again'), true);

      assert.equal((await api('PATCH', `/api/v1/outgoing-servers/${serverId}`, { transport: 'graph' })).status, 200);
      const graphCount = graph.messages.length;
      const smtpCount = sink.messages.length;
      const byGraph = await send({ subject: 'graph only' });
      await d.drain();
      assert.equal((await mail(byGraph)).state, 'sent');
      assert.equal(graph.messages.length, graphCount + 1);
      assert.equal(sink.messages.length, smtpCount);
    });

    it('Save to Sent Items cannot be turned off over Graph, and says why instead of storing a setting it would ignore', async () => {
      const res = await api('PATCH', `/api/v1/outgoing-servers/${serverId}`, { saveToSentItems: false });
      assert.equal(res.status, 400, res.text);
      assert.match(res.text, /keeps a copy in Sent Items of every message sent as MIME/);
      assert.equal((await api('GET', `/api/v1/outgoing-servers/${serverId}`)).body.saveToSentItems, true);
    });

    it('no token or secret reaches the log', () => {
      const logs = t.logs();
      assert.doesNotMatch(logs, /eyJ[A-Za-z0-9_-]{20,}\./, 'no JWT in the log');
      assert.equal(logs.includes(CLIENT_SECRET), false);
    });
  });
}
