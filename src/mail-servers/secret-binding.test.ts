import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isAppError } from '../lib/errors.js';
import { assertPasswordMayMove, endpointMoves, type EndpointPart } from './secret-binding.js';

const relay = { host: 'smtp.example.com', port: 587, security: 'starttls', allowSelfSigned: false };

describe('endpointMoves: what of the endpoint a stored secret was given for an update changes', () => {
  const table: [string, Partial<typeof relay>, EndpointPart[]][] = [
    ['nothing', {}, []],
    ['the host', { host: 'attacker.example.net' }, ['host']],
    ["only the host's case (DNS ignores it)", { host: 'SMTP.Example.com' }, []],
    ['the port', { port: 2525 }, ['port']],
    ['the security', { security: 'none' }, ['security']],
    ['certificate checks turned off', { allowSelfSigned: true }, ['allowSelfSigned']],
    ['everything', { host: '10.0.0.9', port: 25, security: 'none', allowSelfSigned: true }, ['host', 'port', 'security', 'allowSelfSigned']],
  ];
  for (const [what, change, moves] of table) it(what, () => assert.deepEqual(endpointMoves(relay, { ...relay, ...change }), moves));
  it('turning certificate checks back on moves nothing', () => assert.deepEqual(endpointMoves({ ...relay, allowSelfSigned: true }, relay), []));
});

describe('assertPasswordMayMove: a stored password goes only where it was entered for', () => {
  const refusal = (p: Parameters<typeof assertPasswordMayMove>[0]) => {
    try {
      assertPasswordMayMove(p);
      return null;
    } catch (e) {
      assert.ok(isAppError(e));
      return e;
    }
  };
  const moved = { auth: 'password', storedPassword: true, newPassword: false, moves: ['host'] as EndpointPart[] };

  it('refuses a move that keeps the stored password, naming the password field', () => {
    const e = refusal(moved);
    assert.equal(e?.code, 'JUNIPER_ERR_VALIDATION');
    assert.equal(e.status, 400);
    assert.deepEqual(e.details, { field: 'password', moves: ['host'] });
    assert.equal(e.message, 'Enter the password again to change the host: a stored password is only sent to the host, port and security it was entered for.');
  });
  it('names every part that moved', () => {
    assert.match(refusal({ ...moved, moves: ['host', 'port', 'security'] })!.message, /^Enter the password again to change the host, port and security: /);
    assert.equal(
      refusal({ ...moved, moves: ['port', 'allowSelfSigned'] })!.message,
      'Enter the password again to change the port and allow self-signed certificates: a stored password is only sent to the host, port and security it was entered for, with the certificate check it was entered with.',
    );
    assert.match(refusal({ ...moved, moves: ['allowSelfSigned'] })!.message, /^Enter the password again to allow self-signed certificates: /);
  });
  const allowed: [string, Partial<typeof moved>][] = [
    ['a new password comes with the move', { newPassword: true }],
    ['no password is stored', { storedPassword: false }],
    ['the server leaves password auth (its password is dropped)', { auth: 'outlook' }],
    ['nothing moved', { moves: [] }],
  ];
  for (const [what, change] of allowed) it(`lets it through when ${what}`, () => assert.equal(refusal({ ...moved, ...change }), null));
});
