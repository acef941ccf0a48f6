// One self-signed certificate for every loopback peer (SMTP sink, Dovecot), made with openssl once and kept
// in JUNIPER_TEST_WORK (one per test run) or os.tmpdir(). An EC P-256 key: openssl makes it in milliseconds,
// where RSA-2048 takes up to a quarter of a second. Clients trust it with `rejectUnauthorized: false`, or
// with `ca: certificate.cert` (its names are localhost and 127.0.0.1).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface TlsCertificate {
  key: string;
  cert: string;
}

const MAX_AGE_MS = 7 * 24 * 3600 * 1000; // the certificate itself is valid 30 days
let cached: TlsCertificate | undefined;

function split(pem: string): TlsCertificate | undefined {
  const key = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n/.exec(pem)?.[0];
  const cert = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/.exec(pem)?.[0];
  return key && cert ? { key, cert } : undefined;
}

export function testCertificate(): TlsCertificate {
  if (cached) return cached;
  const dir = process.env.JUNIPER_TEST_WORK ?? os.tmpdir();
  // Key and certificate in one file, renamed into place in one step: test files run in parallel processes,
  // and two of them making the pair at once must never leave one's key next to the other's certificate.
  const file = path.join(dir, 'juniper-test-tls.pem');
  try {
    if (Date.now() - fs.statSync(file).mtimeMs < MAX_AGE_MS) cached = split(fs.readFileSync(file, 'utf8'));
  } catch {
    // not made yet
  }
  if (cached) return cached;
  const tmp = fs.mkdtempSync(path.join(dir, 'juniper-tls-'));
  try {
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '30',
        '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-keyout', path.join(tmp, 'key.pem'), '-out', path.join(tmp, 'cert.pem')],
      { stdio: 'ignore' },
    );
    const pair = { key: fs.readFileSync(path.join(tmp, 'key.pem'), 'utf8'), cert: fs.readFileSync(path.join(tmp, 'cert.pem'), 'utf8') };
    fs.writeFileSync(path.join(tmp, 'both.pem'), pair.key + pair.cert, { mode: 0o600 });
    fs.renameSync(path.join(tmp, 'both.pem'), file);
    cached = pair;
    return pair;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
