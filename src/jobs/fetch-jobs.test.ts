import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runningJobState } from './fetch-jobs.js';

describe('runningJobState: the server\'s fetch lease decides whether a running fetch job is alive', () => {
  const now = Date.parse('2026-12-03T08:00:00.000Z');
  const job = { owner: 'host-a:42:jobs:abcdef' };

  it('is alive while the job\'s owner holds the lease, up to and including its last millisecond', () => {
    assert.deepEqual(runningJobState(job, { fetch_lease_owner: job.owner, fetch_lease_until: now + 1000 }, now), { live: true, leaseUntil: now + 1000 });
    assert.deepEqual(runningJobState(job, { fetch_lease_owner: job.owner, fetch_lease_until: now }, now), { live: true, leaseUntil: now });
  });

  it('is dead once its lease ran out, however fresh the row: and says when', () => {
    const state = runningJobState(job, { fetch_lease_owner: job.owner, fetch_lease_until: now - 1 }, now);
    assert.equal(state.live, false);
    assert.equal(
      !state.live && state.error,
      'Interrupted: the process running this job (host-a:42:jobs:abcdef) stopped before it finished (its fetch lease on the server ran out at 2026-12-03T07:59:59.999Z, and a live run renews that lease with every message it stores). Everything it stored is kept; the next fetch goes on from there.',
    );
  });

  it('is dead when another worker holds the lease now, naming it', () => {
    const state = runningJobState(job, { fetch_lease_owner: 'host-b:7:f00d', fetch_lease_until: now + 1000 }, now);
    assert.match(!state.live ? state.error : '', /\(the server's fetch lease is now held by host-b:7:f00d, and a live run renews/);
  });

  it('is dead when nobody holds the lease (released, or never taken)', () => {
    const state = runningJobState(job, { fetch_lease_owner: null, fetch_lease_until: null }, now);
    assert.match(!state.live ? state.error : '', /\(it no longer holds the server's fetch lease, and a live run renews/);
  });

  it('is dead when it is a row of this very process that no longer runs it, even with the lease still held', () => {
    assert.equal(runningJobState(job, { fetch_lease_owner: job.owner, fetch_lease_until: now + 1000 }, now, true).live, false);
  });
});
