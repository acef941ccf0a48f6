// Test Connection for a stored server: the probe addresses from its From filter, its real credentials,
// and the result kept on the server so the form shows when it last worked.
import type { OutgoingServer } from '../db/schema.js';
import { AppError, isAppError } from '../lib/errors.js';
import { HostLookupError, isPolicyRefusal } from '../mail-servers/host-guard.js';
import type { TokenProvider } from '../oauth/token-provider.js';
import type { Parameters } from '../settings/parameters.js';
import { defaultFromAddress } from '../settings/parameter-rules.js';
import { enhancedStatus } from './delivery-failure.js';
import { probeAddresses } from './probe.js';
import { filterMatches, parseFromFilter } from './routing.js';
import type { OutgoingServers } from './servers.js';
import { testGraphConnection } from './graph-connection-test.js';
import { activeTransport } from './server-rules.js';
import { testSmtpConnection } from './test-connection.js';
import { smtpCredentials, smtpEndpoint } from './transport-pool.js';

export interface ConnectionTestResult {
  ok: boolean;
  message: string;
  stage: string;
  /** Said even when the test passed: what the test cannot see (Send As rights for other addresses). */
  warnings: string[];
}

/**
 * An Outlook server whose From Filter leaves out its own mailbox sends as addresses the test cannot try:
 * Microsoft accepts MAIL FROM for any address and refuses the message later (5.7.60 SendAsDenied) unless
 * the mailbox holds Send As rights for it. An empty filter admits the mailbox, so it is not warned about.
 */
export function sendAsWarning(server: Pick<OutgoingServer, 'auth' | 'username' | 'from_filter'>): string | null {
  if (server.auth !== 'outlook' || !server.username) return null;
  const parts = parseFromFilter(server.from_filter);
  if (filterMatches(parts, server.username) !== null) return null;
  return `The From Filter (${parts.join(', ')}) does not include this server's own mailbox ${server.username}: Microsoft will refuse to send as an address the mailbox ${server.username} holds no Send As right for. Add ${server.username} to the From Filter, or grant it Send As rights on those addresses in Exchange.`;
}

export interface TestDeps {
  servers: OutgoingServers;
  parameters: Parameters;
  tokens: TokenProvider | undefined;
  /** Graph's base URL (Settings.graphEndpoint). */
  graphEndpoint: () => Promise<string>;
}

export async function testOutgoingServer(
  server: OutgoingServer,
  deps: TestDeps,
): Promise<ConnectionTestResult> {
  let result: ConnectionTestResult;
  try {
    result = await attempt(server, deps);
  } catch (e) {
    if (e instanceof HostLookupError) result = { ok: false, message: `${e.message} Check the host name.`, stage: 'connect', warnings: [] };
    else if (!isAppError(e)) throw e;
    else result = { ok: false, message: e.message, stage: isPolicyRefusal(e) ? 'connect' : 'credentials', warnings: [] };
  }
  const sendAs = sendAsWarning(server);
  if (sendAs) result.warnings.push(sendAs);
  await deps.servers.recordTest(server.id, result.ok, result.message);
  return result;
}

async function attempt(server: OutgoingServer, deps: TestDeps): Promise<ConnectionTestResult> {
  // The token first, as Test and Confirm does: without one nothing else can pass, so a DNS or network
  // problem reported instead would send the admin the wrong way.
  if (server.auth === 'outlook' && server.token_status === 'missing') {
    throw new AppError('JUNIPER_ERR_OUTLOOK_NOT_CONNECTED', `Outgoing server "${server.name}" (id ${server.id}) has no Outlook token: click Connect your Outlook account, then Test Connection.`);
  }
  if (server.auth === 'outlook' && deps.tokens && activeTransport(server) === 'graph') {
    const graph = await testGraph(server, deps.tokens, deps.graphEndpoint);
    return { ok: graph.ok, message: graph.message, stage: graph.stage, warnings: [] };
  }
  const probe = probeAddresses(server, defaultFromAddress(await deps.parameters.snapshot()));
  const { credentials, tokenSource } = smtpCredentials(server, (s) => deps.servers.password(s), deps.tokens);
  // Before any socket: a host or port the policy refuses is never connected to, so nothing it says is echoed.
  const target = await deps.servers.hostGuard.connectTarget(server, `outgoing mail server "${server.name}" (id ${server.id})`);
  const r = await testSmtpConnection(smtpEndpoint(server), credentials, tokenSource, probe, target ? { target } : {});
  const result = { ok: r.ok, message: r.message, stage: r.stage as string, warnings: [] };
  // An auto server that meets "SMTP AUTH disabled" here moves to Graph as the dispatcher would, if Graph works.
  if (!r.ok && r.stage === 'auth' && server.auth === 'outlook' && server.transport === 'auto' && deps.tokens && enhancedStatus(r.serverReply) === '5.7.139') {
    const graph = await testGraph(server, deps.tokens, deps.graphEndpoint);
    if (!graph.ok) return { ...result, message: `${r.message} Microsoft Graph, which this server (transport auto) would switch to, does not work either: ${graph.message}` };
    await deps.servers.switchToGraph(server.id, `Microsoft refused SMTP AUTH for ${server.username ?? 'the mailbox'} at Test Connection: ${r.serverReply ?? r.message}`, Date.now(), { userId: null, label: 'test connection' });
    return { ok: true, stage: 'done', warnings: [], message: `SMTP AUTH is disabled for this mailbox (${r.serverReply ?? 'Microsoft answered 535 5.7.139'}), so this server (transport auto) now sends through Microsoft Graph. ${graph.message}` };
  }
  return result;
}

function testGraph(server: OutgoingServer, tokens: TokenProvider, graphEndpoint: () => Promise<string>) {
  return graphEndpoint().then((base) => testGraphConnection(server, (renew) => tokens.accessToken('outgoing', server.id, { renew, resource: 'graph' }), base));
}
