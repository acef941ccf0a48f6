import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { after, describe, it } from 'node:test';

import { AppError } from '../lib/errors.js';
import { createVault, keyIdOf, openVault } from './index.js';

const root = mkdtempSync(path.join(tmpdir(), 'juniper-vault-'));
after(() => rmSync(root, { recursive: true, force: true }));

describe('openVault', () => {
  it('with no JUNIPER_SECRET_KEY keeps its key in the data directory across restarts', () => {
    const dataDir = path.join(root, 'restart');
    const first = openVault({ dataDir });
    const cipher = first.encrypt('client-secret-value', 'settings.outlook.clientSecret');
    const second = openVault({ dataDir });
    assert.equal(second.decrypt(cipher, 'settings.outlook.clientSecret'), 'client-secret-value');
    assert.deepEqual(second.keyIds, first.keyIds);
    assert.equal(second.source, path.join(dataDir, 'vault.key'));
    assert.equal(second.hmac('x'), first.hmac('x'));
  });

  it('with JUNIPER_SECRET_KEY uses those keys, newest first', () => {
    const next = randomBytes(32);
    const prev = randomBytes(32);
    const vault = openVault({ dataDir: path.join(root, 'unused'), secretKeys: [next.toString('base64'), prev.toString('hex')] });
    assert.equal(vault.source, 'JUNIPER_SECRET_KEY');
    assert.deepEqual(vault.keyIds, [keyIdOf(next), keyIdOf(prev)]);
  });

  it('rotates: a vault with [new, old] reads old values, writes new ones, and reencrypts old ones', () => {
    const oldKey = randomBytes(32);
    const newKey = randomBytes(32);
    const before = createVault([oldKey], 'test');
    const stored = before.encrypt('refresh-token', 'outgoing_servers.refresh_token:3');
    const rotated = createVault([newKey, oldKey], 'test');
    assert.equal(rotated.decrypt(stored, 'outgoing_servers.refresh_token:3'), 'refresh-token');
    const moved = rotated.reencrypt(stored, 'outgoing_servers.refresh_token:3');
    assert.notEqual(moved, stored);
    assert.equal(createVault([newKey], 'test').decrypt(moved, 'outgoing_servers.refresh_token:3'), 'refresh-token');
    assert.equal(rotated.reencrypt(moved, 'outgoing_servers.refresh_token:3'), moved);
    assert.throws(() => before.decrypt(moved, 'outgoing_servers.refresh_token:3'), (e) => e instanceof AppError && e.code === 'JUNIPER_ERR_VAULT_KEY');
  });

  it('hmac depends on the current key, so a leaked database alone cannot confirm guesses', () => {
    const a = createVault([randomBytes(32)], 'test');
    const b = createVault([randomBytes(32)], 'test');
    assert.match(a.hmac('alice@example.com'), /^[0-9a-f]{64}$/);
    assert.equal(a.hmac('alice@example.com'), a.hmac('alice@example.com'));
    assert.notEqual(a.hmac('alice@example.com'), b.hmac('alice@example.com'));
  });

  it('shows no key material when logged, serialised or spread', () => {
    const key = randomBytes(32);
    const vault = createVault([key], 'test');
    const shown = inspect(vault, { depth: 10, showHidden: true }) + JSON.stringify(vault) + JSON.stringify({ ...vault });
    assert.ok(!shown.includes(key.toString('hex')) && !shown.includes(key.toString('base64')), shown);
    assert.ok(Object.isFrozen(vault));
  });
});
