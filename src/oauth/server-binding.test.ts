import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bindingChanges, encodeBinding, type ServerBinding } from './server-binding.js';

const server: ServerBinding = { auth: 'outlook', username: 'jane@contoso.com', host: 'smtp.office365.com', port: 587, security: 'starttls', allowSelfSigned: false };

describe('bindingChanges', () => {
  it('finds nothing when nothing that decides where tokens go changed (host names without case)', () => {
    assert.deepEqual(bindingChanges(encodeBinding(server), { ...server, host: 'SMTP.Office365.com' }), []);
  });

  it('names each part that changed', () => {
    assert.deepEqual(bindingChanges(encodeBinding(server), { ...server, host: 'evil.example', port: 2525 }), ['host', 'port']);
    assert.deepEqual(bindingChanges(encodeBinding(server), { ...server, username: 'ceo@contoso.com' }), ['username (the mailbox)']);
    assert.deepEqual(bindingChanges(encodeBinding(server), { ...server, auth: 'password', allowSelfSigned: true }), ['authentication', 'certificate check']);
  });

  it('refuses a sign-in started before the binding was kept, or one whose record is unreadable', () => {
    assert.equal(bindingChanges(null, server).length, 1);
    assert.equal(bindingChanges('not json', server).length, 1);
  });
});
