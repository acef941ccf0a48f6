// Password sign-in shared by the API and the sign-in page: throttled (see sign-in-throttle.ts), one error for
// every mismatch.
import { setTimeout as sleep } from 'node:timers/promises';
import type { User } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import { SignInThrottle } from './sign-in-throttle.js';
import type { Users } from './users.js';

export class SignIn {
  constructor(
    private readonly users: Users,
    private readonly throttle = new SignInThrottle(),
    private readonly wait: (ms: number) => Promise<unknown> = sleep,
  ) {}

  /** `address` is the client's address as Fastify reports it (request.ip: behind a trusted proxy, the client's). */
  async attempt(login: string, password: string, address: string): Promise<User> {
    const verdict = this.throttle.check(login, address);
    if (verdict.refused) {
      throw new AppError(
        'JUNIPER_ERR_RATE_LIMITED',
        verdict.reason === 'pair'
          ? 'Too many failed sign-ins for this login from your address; wait 15 minutes, or ask an admin to reset the password with `juniper users password --login LOGIN`.'
          : 'Too many failed sign-ins from your address; wait 15 minutes and try again.',
      );
    }
    // Counted as a failure before the password is checked, and taken back only when it was right: a burst of
    // parallel attempts would otherwise all pass check() before the first of them was counted.
    this.throttle.fail(login, address);
    if (verdict.delayMs > 0) await this.wait(verdict.delayMs);
    const user = await this.users.authenticate(login, password);
    this.throttle.succeed(login, address);
    return user;
  }
}
