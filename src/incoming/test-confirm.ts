// Test & Confirm: connect, authenticate and open the folder exactly as a fetch would, then mark the server
// confirmed so the scheduler starts fetching it. A failure keeps the server as it was and says which step
// failed, what the server answered and what to check.
import type { IncomingServer } from '../db/schema.js';
import { isAppError } from '../lib/errors.js';
import { isPolicyRefusal } from '../mail-servers/host-guard.js';
import { connectServer, type ConnectDeps } from './connect.js';
import { ImapFailure, type ImapStage } from './imap-errors.js';
import type { IncomingServers } from './servers.js';

export interface TestConfirmResult {
  ok: boolean;
  message: string;
  stage: ImapStage | 'done';
  serverReply?: string;
}

const SECURITY = { ssl: 'SSL/TLS', starttls: 'STARTTLS', none: 'no encryption' } as const;

export async function testAndConfirm(server: IncomingServer, deps: ConnectDeps & { servers: IncomingServers }): Promise<TestConfirmResult> {
  let result: TestConfirmResult;
  try {
    const reader = await connectServer(server, deps);
    try {
      const status = await reader.open(server.folder);
      const count = status.exists === 1 ? '1 message' : `${status.exists} messages`;
      result = {
        ok: true,
        stage: 'done',
        message: `Connected to ${server.host}:${server.port} (${SECURITY[server.security]}), logged in as ${server.username}, opened the folder "${server.folder}" (${count}). The server is confirmed: Juniper fetches it every ${server.interval_minutes} minute${server.interval_minutes === 1 ? '' : 's'}.`,
      };
    } finally {
      await reader.close();
    }
  } catch (err) {
    if (err instanceof ImapFailure) {
      result = { ok: false, stage: err.stage, message: err.message, ...(err.serverReply ? { serverReply: err.serverReply } : {}) };
    } else if (isAppError(err)) {
      // A host or port the policy refuses was never connected to: nothing the target could say is echoed.
      result = { ok: false, stage: isPolicyRefusal(err) ? 'connect' : 'credentials', message: err.message };
    } else {
      throw err;
    }
  }
  await deps.servers.recordTest(server.id, result.ok, result.message);
  return result;
}
