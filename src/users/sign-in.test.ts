import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppError, isAppError } from '../lib/errors.js';
import { MAX_LOGIN_CHARS, MAX_PASSWORD_CHARS, SignIn } from './sign-in.js';
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

describe('SignIn counts a login as it is looked up', () => {
  const wrongEveryTime = () => {
    const tried: string[] = [];
    const users = {
      async authenticate(login: string) {
        tried.push(login);
        throw new AppError('JUNIPER_ERR_BAD_CREDENTIALS');
      },
    } as unknown as Users;
    return { tried, signIn: new SignIn(users, new SignInThrottle(), async () => undefined) };
  };
  const codeOf = async (p: Promise<unknown>) => p.then(() => 'signed in', (e: unknown) => (isAppError(e) ? e.code : String(e)));

  it('spaces, tabs, no-break spaces and capitals around a login are the same login to the throttle, as to the lookup', async () => {
    const { tried, signIn } = wrongEveryTime();
    for (let i = 0; i < MAX_PAIR_FAILURES; i++) assert.equal(await codeOf(signIn.attempt('admin', 'guess', '203.0.113.5')), 'JUNIPER_ERR_BAD_CREDENTIALS');
    for (const variant of [' admin', 'admin\t', '\u00a0admin', 'ADMIN', '  Admin \n']) {
      assert.equal(await codeOf(signIn.attempt(variant, 'guess', '203.0.113.5')), 'JUNIPER_ERR_RATE_LIMITED', JSON.stringify(variant));
    }
    assert.equal(tried.length, MAX_PAIR_FAILURES, 'no password was checked once the login was refused');
  });

  it('refuses a login or password longer than any a user can have before it keeps anything for it', async () => {
    const throttle = new SignInThrottle();
    const users = { authenticate: async () => assert.fail('no password is checked') } as unknown as Users;
    const signIn = new SignIn(users, throttle, async () => undefined);
    assert.equal(await codeOf(signIn.attempt('a'.repeat(MAX_LOGIN_CHARS + 1), 'x', '203.0.113.5')), 'JUNIPER_ERR_BAD_CREDENTIALS');
    assert.equal(await codeOf(signIn.attempt('admin', 'x'.repeat(MAX_PASSWORD_CHARS + 1), '203.0.113.5')), 'JUNIPER_ERR_BAD_CREDENTIALS');
    assert.equal(await codeOf(signIn.attempt('   ', 'x', '203.0.113.5')), 'JUNIPER_ERR_BAD_CREDENTIALS');
    assert.equal(throttle.size, 0, 'no counter was kept for them');
  });
});

describe('SignIn.confirm: the signed-in user types the password again', () => {
  const withPassword = (right: string, fails?: Error) => {
    const tried: string[] = [];
    const users = {
      async authenticate(_login: string, password: string) {
        tried.push(password);
        if (fails) throw fails;
        if (password !== right) throw new AppError('JUNIPER_ERR_BAD_CREDENTIALS');
        return { id: 1 };
      },
    } as unknown as Users;
    const throttle = new SignInThrottle();
    return { tried, throttle, signIn: new SignIn(users, throttle, async () => undefined) };
  };

  it('is undefined for the right password, "wrong" for another, and "throttled" with the sign-in message once the pair is used up', async () => {
    const { signIn, tried } = withPassword('right-password');
    assert.equal(await signIn.confirm('jane', 'right-password', '203.0.113.5'), undefined);
    for (let i = 0; i < MAX_PAIR_FAILURES; i++) assert.deepEqual(await signIn.confirm('jane', `guess-${i}`, '203.0.113.5'), { reason: 'wrong' });
    const refused = await signIn.confirm('jane', 'right-password', '203.0.113.5');
    assert.equal(refused?.reason, 'throttled');
    assert.match(refused.reason === 'throttled' ? refused.message : '', /Too many failed sign-ins for this login from your address; wait 15 minutes/);
    assert.equal(tried.length, 1 + MAX_PAIR_FAILURES, 'the refused one checked no password');
    await assert.rejects(signIn.attempt('jane', 'right-password', '203.0.113.5'), /Too many failed sign-ins/, 'a sign-in from that address is refused too: the same counters');
  });

  it('refuses an empty field without an attempt: nothing is counted and no password is checked', async () => {
    const { signIn, tried, throttle } = withPassword('right-password');
    for (let i = 0; i < MAX_PAIR_FAILURES * 2; i++) assert.deepEqual(await signIn.confirm('jane', '', '203.0.113.5'), { reason: 'missing' });
    assert.equal(throttle.size, 0);
    assert.deepEqual(tried, []);
    assert.equal(await signIn.confirm('jane', 'right-password', '203.0.113.5'), undefined);
  });

  it('lets a failure that is no refusal (the database) propagate instead of calling it a wrong password', async () => {
    const { signIn } = withPassword('right-password', new AppError('JUNIPER_ERR_DATABASE', 'The database failed.'));
    await assert.rejects(signIn.confirm('jane', 'right-password', '203.0.113.5'), (e: unknown) => isAppError(e) && e.code === 'JUNIPER_ERR_DATABASE');
  });
});
