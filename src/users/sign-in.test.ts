import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppError, isAppError } from '../lib/errors.js';
import { SignIn } from './sign-in.js';
import { MAX_PAIR_FAILURES, SignInThrottle } from './sign-in-throttle.js';
import type { Users } from './users.js';

describe('SignIn under a burst of parallel attempts', () => {
  it('checks at most MAX_PAIR_FAILURES passwords for one login from one address, however many arrive at once', async () => {
    let checked = 0;
    // The password check of Users, slowed down as scrypt is: every attempt is in flight before the first ends.
    const users = {
      async authenticate() {
        checked++;
        await new Promise((r) => setTimeout(r, 20));
        throw new AppError('JUNIPER_ERR_BAD_CREDENTIALS');
      },
    } as unknown as Users;
    const signIn = new SignIn(users, new SignInThrottle(), async () => undefined);
    const results = await Promise.allSettled(Array.from({ length: 200 }, () => signIn.attempt('admin', 'guess', '203.0.113.5')));
    const refused = results.filter((r) => r.status === 'rejected' && isAppError(r.reason) && r.reason.code === 'JUNIPER_ERR_RATE_LIMITED').length;
    assert.equal(checked, MAX_PAIR_FAILURES);
    assert.equal(refused, 200 - MAX_PAIR_FAILURES);
  });
});
