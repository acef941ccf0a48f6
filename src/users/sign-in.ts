// Password sign-in shared by the API and the sign-in page: throttled, one error for every mismatch.
import type { User } from '../db/schema.js';
import { AppError, isAppError } from '../lib/errors.js';
import { SignInThrottle } from './sign-in-throttle.js';
import type { Users } from './users.js';

export class SignIn {
  constructor(
    private readonly users: Users,
    private readonly throttle = new SignInThrottle(),
  ) {}

  async attempt(login: string, password: string, ip: string): Promise<User> {
    if (this.throttle.blocked(login, ip)) {
      throw new AppError('JUNIPER_ERR_RATE_LIMITED', 'Too many failed sign-ins; wait 15 minutes, or reset the password with `juniper users password --login LOGIN`.');
    }
    try {
      const user = await this.users.authenticate(login, password);
      this.throttle.succeed(login);
      return user;
    } catch (e) {
      if (isAppError(e) && e.code === 'JUNIPER_ERR_BAD_CREDENTIALS') this.throttle.fail(login, ip);
      throw e;
    }
  }
}
