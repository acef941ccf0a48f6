import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { massMailingKeys, withParameter, type MassMailingChoice } from './mass-mailing-choice.js';

describe('the mass-mailing choice a mass_mailing.* parameter change makes', () => {
  const on: MassMailingChoice = { dedicatedServer: true, serverId: 3 };
  const cases: [string, MassMailingChoice, string, string | null, MassMailingChoice][] = [
    ['turning the option off', on, 'mass_mailing.outgoing_mail_server', 'false', { dedicatedServer: false, serverId: 3 }],
    ['turning it on', { dedicatedServer: false, serverId: 3 }, 'mass_mailing.outgoing_mail_server', 'true', on],
    ['unsetting the option (its default, off)', on, 'mass_mailing.outgoing_mail_server', null, { dedicatedServer: false, serverId: 3 }],
    ['naming another server', on, 'mass_mailing.mail_server_id', '7', { dedicatedServer: true, serverId: 7 }],
    ['unsetting the server', on, 'mass_mailing.mail_server_id', null, { dedicatedServer: true, serverId: null }],
    ['another key', on, 'mail.catchall.domain', 'example.com', on],
  ];
  for (const [name, old, key, value, next] of cases) {
    it(`${name}: ${key} = ${String(value)}`, () => assert.deepEqual(withParameter(old, key, value), next));
  }

  it('names exactly the two parameters Settings keeps its choice in', () => {
    assert.deepEqual([...massMailingKeys].sort(), ['mass_mailing.mail_server_id', 'mass_mailing.outgoing_mail_server']);
  });
});
