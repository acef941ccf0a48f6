import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';

import { projectRoot } from '../../test/helpers/project-root.js';
import { AppError } from '../lib/errors.js';
import { KEY_FILE_NAME, loadVaultKeys, parseSecretKey } from './keys.js';
import { keyIdOf } from './secret-box.js';

const root = mkdtempSync(path.join(tmpdir(), 'juniper-vault-keys-'));
after(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = (): string => path.join(root, `d${++dirs}`);
const posix = process.platform !== 'win32';

function assertAppError(fn: () => unknown, code: string, pattern: RegExp, secret?: string): AppError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof AppError, `expected an AppError, got ${String(caught)}`);
  assert.equal(caught.code, code);
  assert.match(caught.message, pattern);
  if (secret) assert.ok(!caught.message.includes(secret) && !JSON.stringify(caught.details ?? {}).includes(secret));
  return caught;
}

describe('JUNIPER_SECRET_KEY', () => {
  const raw = randomBytes(32);
  describe('accepts 32 bytes in every usual spelling', () => {
    const cases: Array<[string, string]> = [
      ['hex, lower case', raw.toString('hex')],
      ['hex, upper case', raw.toString('hex').toUpperCase()],
      ['base64 with padding (openssl rand -base64 32)', raw.toString('base64')],
      ['base64 without padding', raw.toString('base64').replace(/=$/, '')],
      ['base64url', raw.toString('base64url')],
    ];
    for (const [name, value] of cases) {
      it(name, () => assert.deepEqual(parseSecretKey(value), raw));
    }
  });

  it('uses the keys in order, reports its source, and touches no disk', () => {
    const dataDir = freshDir();
    const other = randomBytes(32);
    const loaded = loadVaultKeys({ dataDir, secretKeys: [raw.toString('base64'), other.toString('hex')] });
    assert.deepEqual(loaded.keys, [raw, other]);
    assert.equal(loaded.source, 'JUNIPER_SECRET_KEY');
    assert.equal(loaded.created, false);
    assert.equal(existsSync(dataDir), false);
  });

  it('stretches a passphrase of 32+ characters into a stable 32-byte key', () => {
    const phrase = 'this is a long enough passphrase, truly';
    const key = parseSecretKey(phrase);
    assert.equal(key.length, 32);
    assert.deepEqual(parseSecretKey(phrase), key);
    assert.notDeepEqual(parseSecretKey(`${phrase}!`), key);
    // Pinned (cross-checked with Python's hashlib.scrypt): a change of salt or scrypt parameters would
    // orphan every secret encrypted under a passphrase.
    assert.equal(keyIdOf(parseSecretKey('juniper test passphrase, 32+ chars long')), '65c22565');
  });

  describe('refuses keys shorter than 32 characters, naming the variable and the rule, not the key', () => {
    const cases: Array<[string, string[], RegExp]> = [
      ['a short word', ['hunter2'], /JUNIPER_SECRET_KEY: the key is too short \(7 characters\)/],
      ['31 characters', ['a'.repeat(31)], /too short \(31 characters\)/],
      ['16 random bytes in base64 (an AES-128 key)', [randomBytes(16).toString('base64')], /too short/],
      ['the second of two keys', [raw.toString('hex'), 'shortish-old-key'], /key 2 of 2 is too short/],
    ];
    for (const [name, secretKeys, pattern] of cases) {
      it(name, () => {
        const err = assertAppError(() => loadVaultKeys({ dataDir: freshDir(), secretKeys }), 'JUNIPER_ERR_CONFIG', pattern, secretKeys.at(-1));
        assert.match(err.message, /32 random bytes written in base64, base64url or hex.*passphrase of at least 32 characters/);
      });
    }
  });

  it('an empty list falls back to the key file', () => {
    const dataDir = freshDir();
    const loaded = loadVaultKeys({ dataDir, secretKeys: [] });
    assert.equal(loaded.source, path.join(dataDir, KEY_FILE_NAME));
  });
});

describe('the vault.key file', () => {
  it('is created on first use (with its data directory) as base64 and a newline, mode 0600, then reused', () => {
    const dataDir = path.join(freshDir(), 'nested', 'data');
    const first = loadVaultKeys({ dataDir });
    const file = path.join(dataDir, KEY_FILE_NAME);
    assert.equal(first.source, file);
    assert.equal(first.created, true);
    assert.equal(first.keys.length, 1);
    assert.equal(readFileSync(file, 'utf8'), `${first.keys[0]?.toString('base64')}\n`);
    if (posix) assert.equal(statSync(file).mode & 0o777, 0o600);

    const second = loadVaultKeys({ dataDir });
    assert.equal(second.created, false);
    assert.deepEqual(second.keys, first.keys);
  });

  it('accepts a key file written by hand in hex', () => {
    const dataDir = freshDir();
    mkdirSync(dataDir);
    const key = randomBytes(32);
    writeFileSync(path.join(dataDir, KEY_FILE_NAME), `  ${key.toString('hex')}\r\n`, { mode: 0o600 });
    assert.deepEqual(loadVaultKeys({ dataDir }).keys, [key]);
  });

  describe('is refused when other users may read or write it, with the chmod that fixes it', { skip: !posix }, () => {
    for (const mode of [0o644, 0o640, 0o604, 0o620, 0o666]) {
      it(`mode ${mode.toString(8)}`, () => {
        const dataDir = freshDir();
        loadVaultKeys({ dataDir });
        const file = path.join(dataDir, KEY_FILE_NAME);
        chmodSync(file, mode);
        const err = assertAppError(() => loadVaultKeys({ dataDir }), 'JUNIPER_ERR_CONFIG', /readable or writable by other users/);
        assert.ok(err.message.includes(`chmod 600 ${file}`), err.message);
        assert.ok(err.message.includes(`mode ${mode.toString(8)}`), err.message);
      });
    }
  });

  it('is refused when it holds no key, without quoting its content', () => {
    const dataDir = freshDir();
    mkdirSync(dataDir);
    writeFileSync(path.join(dataDir, KEY_FILE_NAME), 'not-a-key-but-maybe-a-secret\n', { mode: 0o600 });
    assertAppError(() => loadVaultKeys({ dataDir }), 'JUNIPER_ERR_CONFIG', /does not hold a key.*Restore it from a backup/, 'not-a-key');
  });

  it('left empty by an interrupted start gives a clear error after waiting briefly', () => {
    const dataDir = freshDir();
    mkdirSync(dataDir);
    writeFileSync(path.join(dataDir, KEY_FILE_NAME), '', { mode: 0o600 });
    assertAppError(() => loadVaultKeys({ dataDir }), 'JUNIPER_ERR_CONFIG', /is empty.*delete it and start again/);
  });

  it('is a directory: refused', () => {
    const dataDir = freshDir();
    mkdirSync(path.join(dataDir, KEY_FILE_NAME), { recursive: true });
    assertAppError(() => loadVaultKeys({ dataDir }), 'JUNIPER_ERR_CONFIG', /not a regular file/);
  });
});

// Real processes, because loadVaultKeys is synchronous: two calls in one process can never overlap.
describe('processes starting together', () => {
  it('end up with one key: exactly one creates the file, all use its key', async () => {
    const dataDir = freshDir();
    const loaders = Array.from({ length: 4 }, () => startLoader(dataDir));
    await Promise.all(loaders.map((l) => l.ready));
    for (const l of loaders) l.go();
    const results = await Promise.all(loaders.map((l) => l.result));
    for (const r of results) assert.equal(r.error, undefined, r.error);
    const fileKey = Buffer.from(readFileSync(path.join(dataDir, KEY_FILE_NAME), 'utf8').trim(), 'base64').toString('hex');
    assert.deepEqual(
      results.map((r) => r.key),
      results.map(() => fileKey),
    );
    assert.equal(results.filter((r) => r.created).length, 1);
  });

  it('a process that finds the file created but not yet written waits for the key', async () => {
    const dataDir = freshDir();
    mkdirSync(dataDir);
    const file = path.join(dataDir, KEY_FILE_NAME);
    writeFileSync(file, '', { mode: 0o600 });
    const key = randomBytes(32);
    const loader = startLoader(dataDir);
    await loader.ready;
    loader.go();
    await loader.loading;
    await new Promise((resolve) => setTimeout(resolve, 200));
    writeFileSync(file, `${key.toString('base64')}\n`);
    const result = await loader.result;
    assert.equal(result.error, undefined, result.error);
    assert.equal(result.key, key.toString('hex'));
    assert.equal(result.created, false);
  });
});

interface LoaderResult {
  key?: string;
  created?: boolean;
  error?: string;
}

// From the compiled tests (dist-test/) the loader imports keys.js as it is; from the sources, keys.ts through tsx.
const fromSource = import.meta.url.endsWith('.ts');
const LOADER_SCRIPT = `
import { createInterface } from 'node:readline';
const { loadVaultKeys } = await import(process.env.KEYS_MODULE);
console.log('ready');
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line !== 'go') continue;
  console.log('loading');
  try {
    const r = loadVaultKeys({ dataDir: process.env.DATA_DIR });
    console.log(JSON.stringify({ key: r.keys[0].toString('hex'), created: r.created }));
  } catch (e) {
    console.log(JSON.stringify({ error: String(e && e.message) }));
  }
  break;
}
process.exit(0);
`;

function startLoader(dataDir: string): { ready: Promise<void>; loading: Promise<void>; result: Promise<LoaderResult>; go(): void } {
  const child = spawn(process.execPath, [...(fromSource ? ['--import', 'tsx'] : []), '--input-type=module', '-e', LOADER_SCRIPT], {
    cwd: projectRoot,
    env: { ...process.env, KEYS_MODULE: new URL(fromSource ? './keys.ts' : './keys.js', import.meta.url).href, DATA_DIR: dataDir },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let onReady!: () => void;
  let onLoading!: () => void;
  let onResult!: (r: LoaderResult) => void;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  const loading = new Promise<void>((resolve) => (onLoading = resolve));
  const result = new Promise<LoaderResult>((resolve, reject) => {
    onResult = resolve;
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`loader exited with ${code} before answering`)));
  });
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (line === 'ready') onReady();
    else if (line === 'loading') onLoading();
    else if (line.startsWith('{')) onResult(JSON.parse(line) as LoaderResult);
  });
  return { ready, loading, result, go: () => child.stdin.end('go\n') };
}
