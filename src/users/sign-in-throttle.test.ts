import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addressBucket, delayForFailures, MAX_ADDRESS_FAILURES, MAX_DELAY_MS, MAX_PAIR_FAILURES, SignInThrottle, WINDOW_MS } from './sign-in-throttle.js';

describe('sign-in throttle', () => {
  it('slows a login down with a short, capped delay and never refuses it by login alone', () => {
    const table: [number, number][] = [[0, 0], [3, 0], [4, 125], [5, 250], [6, 500], [7, 1000], [8, 2000], [50, MAX_DELAY_MS], [10_000, MAX_DELAY_MS]];
    for (const [failures, delay] of table) assert.equal(delayForFailures(failures), delay, `${failures} failures`);
  });

  it('refuses the (login, address) pair after 10 failures, not the same login from another address', () => {
    const t = new SignInThrottle(() => 1_000);
    for (let i = 0; i < 50; i++) t.fail('Admin', '203.0.113.9');
    assert.deepEqual(t.check('admin', '203.0.113.9'), { refused: true, reason: 'pair' });
    const elsewhere = t.check('admin', '198.51.100.1');
    assert.equal(elsewhere.refused, false);
    assert.equal(!elsewhere.refused && elsewhere.delayMs, MAX_DELAY_MS);
  });

  it('refuses one address that fails for many logins, and only that address', () => {
    const t = new SignInThrottle(() => 1_000);
    for (let i = 0; i < MAX_ADDRESS_FAILURES; i++) t.fail(`user${i}`, '203.0.113.9');
    assert.deepEqual(t.check('someone-new', '203.0.113.9'), { refused: true, reason: 'address' });
    assert.deepEqual(t.check('someone-new', '198.51.100.1'), { refused: false, delayMs: 0 });
  });

  it('forgets failures after the window, and a success clears the pair and the slow-down', () => {
    let now = 0;
    const t = new SignInThrottle(() => now);
    for (let i = 0; i < MAX_PAIR_FAILURES; i++) t.fail('jane', '192.0.2.1');
    assert.equal(t.check('jane', '192.0.2.1').refused, true);
    now += WINDOW_MS + 1;
    assert.deepEqual(t.check('jane', '192.0.2.1'), { refused: false, delayMs: 0 });
    for (let i = 0; i < 6; i++) t.fail('jane', '192.0.2.1');
    t.succeed('jane', '192.0.2.1');
    assert.deepEqual(t.check('jane', '192.0.2.1'), { refused: false, delayMs: 0 });
  });

  it('a guesser inventing logins from many addresses cannot push out the counters that refuse it', () => {
    const t = new SignInThrottle(() => 1_000);
    let atTarget = 0;
    const guessAtTarget = (address: string) => {
      while (!t.check('ceo', address).refused) {
        t.fail('ceo', address);
        atTarget++;
      }
    };
    // 60 addresses that each try the target and then invent logins: with one bound for every kind they took
    // turns, each pushing the first ones' counters out.
    const takingTurns = Array.from({ length: 60 }, (_, i) => `198.51.100.${i}`);
    for (let round = 0; round < 2; round++) {
      for (const [a, address] of takingTurns.entries()) {
        guessAtTarget(address);
        for (let j = 0; j < 200 && !t.check(`x${round}-${a}-${j}`, address).refused; j++) t.fail(`x${round}-${a}-${j}`, address);
      }
    }
    assert.equal(atTarget, takingTurns.length * MAX_PAIR_FAILURES, 'ten guesses at the login from each address in the window, not more');
    // 20 addresses try the target and keep most of their tries; 120 others spend all of theirs on invented logins
    // (12,000 pairs): with refusing pairs among the others, that pushed the 20 pairs out and they could go on.
    atTarget = 0;
    const keeping = Array.from({ length: 20 }, (_, i) => `203.0.113.${i}`);
    for (const address of keeping) guessAtTarget(address);
    for (let f = 0; f < 120; f++) for (let j = 0; j < 200 && !t.check(`y${f}-${j}`, `192.0.2.${f}`).refused; j++) t.fail(`y${f}-${j}`, `192.0.2.${f}`);
    for (const address of keeping) guessAtTarget(address);
    assert.equal(atTarget, keeping.length * MAX_PAIR_FAILURES, 'the flood did not free the refused pairs');
  });

  it('keeps a bounded number of counters however many logins and addresses a guesser invents', () => {
    const t = new SignInThrottle(() => 1_000);
    for (let i = 0; i < 12_000; i++) t.fail(`u${i}`, `10.0.${i >> 8}.${i & 255}`);
    // At most 10,000 of each kind.
    const { pairs, refusingPairs, addresses, logins } = t.sizes;
    assert.ok(pairs <= 10_000 && refusingPairs <= 10_000 && addresses <= 10_000 && logins <= 10_000, JSON.stringify(t.sizes));
    // The least recently failed went, the latest stay: the last guesser's pair is still counted.
    for (let i = 0; i < MAX_PAIR_FAILURES - 1; i++) t.fail('u11999', '10.0.46.223');
    assert.deepEqual(t.check('u11999', '10.0.46.223'), { refused: true, reason: 'pair' });
    assert.deepEqual(t.check('u0', '10.0.0.0'), { refused: false, delayMs: 0 }, 'the oldest counters were dropped');
  });
});

describe('sign-in throttle: attempts counted before the password is checked', () => {
  it('IPv6 clients are counted per /64: fresh addresses of one block share the counters', () => {
    const t = new SignInThrottle();
    for (let i = 0; i < MAX_PAIR_FAILURES; i++) t.fail('jane', `2001:db8:1:2::${i.toString(16)}`);
    assert.deepEqual(t.check('jane', '2001:db8:1:2:ffff::1'), { refused: true, reason: 'pair' });
    assert.equal(t.check('jane', '2001:db8:1:3::1').refused, false, 'another /64 is another client');
    assert.equal(addressBucket('2001:0db8:0001:0002:0000:0000:0000:0001'), '2001:db8:1:2::/64');
    assert.equal(addressBucket('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(addressBucket('192.0.2.7'), '192.0.2.7');
  });

  it('a right password takes back the attempt counted for its address in advance', () => {
    const t = new SignInThrottle();
    for (let i = 0; i < MAX_ADDRESS_FAILURES + 20; i++) {
      t.fail(`user${i}`, '198.51.100.1');
      t.succeed(`user${i}`, '198.51.100.1');
    }
    assert.equal(t.check('someone', '198.51.100.1').refused, false, 'an office signing in 120 times is not refused');
  });
});
