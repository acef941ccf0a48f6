import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { waitsReleasedBy } from './policy-waits.js';

describe('the waiting mails a parameter change releases', () => {
  it('releases the mails refused by the port policy when mail.server.allowed_ports changes', () => assert.deepEqual(waitsReleasedBy('mail.server.allowed_ports'), ['port_not_allowed']));
  it('releases the mails refused by the address policy when mail.server.allowed_private_hosts changes', () =>
    assert.deepEqual(waitsReleasedBy('mail.server.allowed_private_hosts'), ['host_not_allowed']));
  it('releases nothing for another parameter, nor for a key named like an object property', () => {
    for (const key of ['mail.catchall.domain', 'web.base.url', 'toString', '__proto__']) assert.deepEqual(waitsReleasedBy(key), [], key);
  });
});
