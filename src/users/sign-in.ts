// Password sign-in shared by the API and the sign-in page: throttled (see sign-in-throttle.ts), one error for
// every mismatch.
import { setTimeout as sleep } from 'node:timers/promises';
import type { User } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import { PASSWORD_MAX_LENGTH } from '../vault/password.js';
import { RecentConfirmations } from './recent-confirmations.js';
import { SignInThrottle } from './sign-in-throttle.js';
import type { Users } from './users.js';

/** Longer than any login loginSchema lets be made (64), with room; the API's sign-in schema allows 200. */
export const MAX_LOGIN_CHARS = 200;
/**
 * Above any password the policy lets be set (PASSWORD_MAX_LENGTH code points after NFKC), counted in UTF-16
 * units as `length` does: a code point is at most 2 units, and NFKC can expand, hence the room.
 */
export const MAX_PASSWORD_CHARS = 4 * PASSWORD_MAX_LENGTH;

/** Why a re-entered password was refused (SignIn.confirm); the form or route words it for what it guards. */
export type PasswordRefusal = { reason: 'missing' } | { reason: 'wrong' } | { reason: 'throttled'; message: string };

export class SignIn {
  /** Admin sessions whose password was asked again lately (recent-confirmations.ts). */
  readonly recent = new RecentConfirmations();

  constructor(
    private readonly users: Users,
    private readonly throttle = new SignInThrottle(),
    private readonly wait: (ms: number) => Promise<unknown> = sleep,
  ) {}

  /** `address` is the client's address as Fastify reports it (request.ip: behind a trusted proxy, the client's). */
  async attempt(rawLogin: string, password: string, address: string): Promise<User> {
    // Counted under the login as it is looked up (users.ts): " admin" and "ADMIN\t" are admin's attempts too,
    // not counters of their own that let a guesser go on after admin's were used up.
    const login = rawLogin.trim().toLowerCase();
    // No user has such a login or password (users.ts, passwords): refused before anything is kept for it, so
    // a stream of huge logins cannot fill the throttle's memory.
    if (login.length === 0 || login.length > MAX_LOGIN_CHARS || password.length > MAX_PASSWORD_CHARS) throw new AppError('JUNIPER_ERR_BAD_CREDENTIALS');
    const verdict = this.throttle.check(login, address);
    if (verdict.refused) {
      throw new AppError(
        'JUNIPER_ERR_RATE_LIMITED',
        verdict.reason === 'pair'
          ? 'Too many failed sign-ins for this login from your address; wait 15 minutes and try again, or ask an admin to set a new password on the Users page, which lifts this at once.'
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

  /** An admin set the login a new password (the Users page): the failures counted against the old one are forgotten. */
  passwordReset(login: string): void {
    this.throttle.forgetLogin(login.trim());
  }

  /**
   * The signed-in user's password asked again before something a session alone must not do (a new password; an
   * API key, which outlives sign-out and password changes). The same attempt as a sign-in, so its failures
   * count against that login and address and the throttle refuses a session holder who guesses: no
   * unthrottled password oracle behind a session. An empty field is refused without an attempt (nothing was
   * guessed). Resolves to the refusal, or undefined when the password was right; other failures propagate.
   */
  async confirm(login: string, password: string, address: string): Promise<PasswordRefusal | undefined> {
    if (password === '') return { reason: 'missing' };
    try {
      await this.attempt(login, password, address);
      return undefined;
    } catch (e) {
      if (!(e instanceof AppError)) throw e;
      if (e.code === 'JUNIPER_ERR_RATE_LIMITED') return { reason: 'throttled', message: e.message };
      if (e.code === 'JUNIPER_ERR_BAD_CREDENTIALS') return { reason: 'wrong' };
      throw e;
    }
  }
}
