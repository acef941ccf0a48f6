import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { migrationSet } from './index.js';

// Every migration name that has shipped on main. A database that ran the last of them refuses a migration that
// sorts before it (Kysely: "corrupted migrations"), so a new migration must sort after all of these; once it lands,
// add its name here.
const RELEASED = [
  '001-foundation',
  '002-outgoing',
  '003-oauth',
  '004-incoming',
  '005-incoming-hardening',
  '006-queue-and-token-lock',
  '008-server-pool-and-rate',
  '011-sent-by',
  '014-worker-heartbeats-and-jobs',
  '015-webhooks',
  '017-mail-attempts',
  '018-sweep-and-scan-indexes',
  '019-graph-transport',
  '021-oauth-connections',
  '022-partial-outgoing-indexes',
  '023-unreturned-uid',
  '024-fetch-attempt',
  '025-follow-up-mails',
  '031-active-before-archive',
  '033-oauth-state-binding',
];

describe('migration order', () => {
  const names = Object.keys(migrationSet('sqlite'));

  it('keeps every released migration, under its released name', () => {
    const missing = RELEASED.filter((name) => !names.includes(name));
    assert.deepEqual(missing, [], `released migrations must never be renamed or removed: ${missing.join(', ')}`);
  });

  it('numbers every new migration after the last released one', () => {
    const last = RELEASED.at(-1)!;
    const early = names.filter((name) => !RELEASED.includes(name) && name.localeCompare(last) <= 0);
    assert.deepEqual(
      early,
      [],
      `a database that ran ${last} refuses a migration that sorts before it: number ${early.join(', ')} ` +
        `${String(Number(last.slice(0, 3)) + 1).padStart(3, '0')} or higher`,
    );
  });

  it('lists the set in the order it runs, with the same names for both databases', () => {
    assert.deepEqual(names, [...names].sort());
    assert.deepEqual(Object.keys(migrationSet('postgres')), names);
  });
});
