// Test Connection for a stored server: the probe addresses from its From filter, its real credentials,
// and the result kept on the server so the form shows when it last worked.
import type { OutgoingServer } from '../db/schema.js';
import { isAppError } from '../lib/errors.js';
import { HostLookupError } from '../mail-servers/host-guard.js';
import type { TokenProvider } from '../oauth/token-provider.js';
import type { Parameters } from '../settings/parameters.js';
import { defaultFromAddress } from '../settings/parameter-rules.js';
import { probeAddresses } from './probe.js';
import type { OutgoingServers } from './servers.js';
import { testSmtpConnection } from './test-connection.js';
import { smtpCredentials, smtpEndpoint } from './transport-pool.js';

export interface ConnectionTestResult {
  ok: boolean;
  message: string;
  stage: string;
}

export async function testOutgoingServer(
  server: OutgoingServer,
  deps: { servers: OutgoingServers; parameters: Parameters; tokens: TokenProvider | undefined },
): Promise<ConnectionTestResult> {
  let result: ConnectionTestResult;
  try {
    const probe = probeAddresses(server, defaultFromAddress(await deps.parameters.snapshot()));
    const { credentials, tokenSource } = smtpCredentials(server, (s) => deps.servers.password(s), deps.tokens);
    // Before any socket: a host the address policy refuses is never connected to, so nothing it says is echoed.
    const target = await deps.servers.hostGuard.connectTarget(server, `outgoing mail server "${server.name}" (id ${server.id})`);
    const r = await testSmtpConnection(smtpEndpoint(server), credentials, tokenSource, probe, target ? { target } : {});
    result = { ok: r.ok, message: r.message, stage: r.stage };
  } catch (e) {
    if (e instanceof HostLookupError) result = { ok: false, message: `${e.message} Check the host name.`, stage: 'connect' };
    else if (!isAppError(e)) throw e;
    else result = { ok: false, message: e.message, stage: e.code === 'JUNIPER_ERR_HOST_NOT_ALLOWED' ? 'connect' : 'credentials' };
  }
  await deps.servers.recordTest(server.id, result.ok, result.message);
  return result;
}
