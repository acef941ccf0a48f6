import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toMailParameters } from '../settings/parameter-rules.js';
import type { MailParameters } from '../settings/parameter-rules.js';
import { filterMatches, parseFromFilter, routeMail, routeParametersFrom } from './routing.js';
import type { RoutableServer, RouteDecision, RouteInput, RouteParameters } from './routing.js';

const server = (id: number, fromFilter: string | null, extra: Partial<RoutableServer> = {}): RoutableServer => ({
  id,
  name: fromFilter === null || fromFilter === '' ? `server ${id}` : fromFilter,
  fromFilter,
  priority: 10,
  active: true,
  ...extra,
});

/**
 * Parameters as stored (key -> value, null to unset), read through toMailParameters like the app does;
 * the seed's catch-all domain example.com and mail.default.from "notifications" unless overridden.
 */
const mailParameters = (over: Record<string, string | null> = {}): MailParameters => {
  const stored = Object.entries({ 'mail.catchall.domain': 'example.com', 'mail.default.from': 'notifications', ...over });
  return toMailParameters(new Map(stored.filter((entry): entry is [string, string] => entry[1] !== null)));
};

/** notifications@example.com, no bounce address, no dedicated mass-mailing server. */
const params = (over: Partial<RouteParameters> = {}): RouteParameters => ({ ...routeParametersFrom(mailParameters()), ...over });

function ok(decision: RouteDecision): Extract<RouteDecision, { ok: true }> {
  assert.ok(decision.ok, `expected a route, got: ${decision.ok ? '' : decision.reason}`);
  return decision;
}

function failed(decision: RouteDecision): Extract<RouteDecision, { ok: false }> {
  assert.ok(!decision.ok, `expected a failure, got server ${decision.ok ? decision.serverId : ''}`);
  return decision;
}

interface Expected {
  serverId: number;
  rule: RouteDecision['rule'];
  from: string;
  replyTo?: string | null;
  envelopeFrom: string;
  sendAs: 'from' | 'notifications';
  warnings?: number;
}

interface Case {
  behaviour: string;
  input: RouteInput;
  servers: RoutableServer[];
  params?: Partial<RouteParameters>;
  expected: Expected;
}

function check(c: Case): void {
  const d = ok(routeMail(c.input, c.servers, params(c.params)));
  assert.deepEqual(
    { serverId: d.serverId, rule: d.rule, from: d.from, replyTo: d.replyTo, envelopeFrom: d.envelopeFrom, sendAs: d.sendAs, warnings: d.warnings.length },
    { replyTo: null, warnings: 0, ...c.expected },
    d.explanation.join('\n'),
  );
}

describe('routeMail: the rules in order', () => {
  const cases: Case[] = [
    {
      behaviour: 'rule 1: a server listing the From address exactly sends as the From, even before a server listing its domain',
      input: { from: 'John Doe <john@example.com>' },
      servers: [server(1, 'example.com', { priority: 1 }), server(2, 'john@example.com', { priority: 5 })],
      expected: { serverId: 2, rule: 1, from: '"John Doe" <john@example.com>', envelopeFrom: 'john@example.com', sendAs: 'from' },
    },
    {
      behaviour: 'rule 2: a server listing the From domain sends as the From, before the notifications server',
      input: { from: 'bob@example.org' },
      servers: [server(1, 'notifications@example.com', { priority: 1 }), server(2, 'example.org')],
      expected: { serverId: 2, rule: 2, from: 'bob@example.org', envelopeFrom: 'bob@example.org', sendAs: 'from' },
    },
    {
      behaviour: 'rule 3: a server listing the notifications address sends as notifications, before one listing its domain',
      input: { from: 'Bob <bob@example.org>' },
      servers: [server(1, 'example.com', { priority: 1 }), server(2, 'notifications@example.com'), server(3, null)],
      expected: {
        serverId: 2,
        rule: 3,
        from: '"Bob" <notifications@example.com>',
        replyTo: '"Bob" <bob@example.org>',
        envelopeFrom: 'notifications@example.com',
        sendAs: 'notifications',
      },
    },
    {
      behaviour: 'rule 4: a server listing the notifications domain sends as notifications, before an empty filter',
      input: { from: 'Bob <bob@example.org>' },
      servers: [server(1, null, { priority: 1 }), server(2, 'example.com')],
      expected: {
        serverId: 2,
        rule: 4,
        from: '"Bob" <notifications@example.com>',
        replyTo: '"Bob" <bob@example.org>',
        envelopeFrom: 'notifications@example.com',
        sendAs: 'notifications',
      },
    },
    {
      behaviour: 'rule 5: the first server with an empty filter sends as notifications when that is set',
      input: { from: 'Bob <bob@example.org>' },
      servers: [server(1, 'other.org', { priority: 1 }), server(2, ''), server(3, null)],
      expected: {
        serverId: 2,
        rule: 5,
        from: '"Bob" <notifications@example.com>',
        replyTo: '"Bob" <bob@example.org>',
        envelopeFrom: 'notifications@example.com',
        sendAs: 'notifications',
      },
    },
    {
      behaviour: 'rule 5: without a catch-all domain there is no notifications address, so the empty filter sends as the From',
      input: { from: 'Bob <bob@example.org>' },
      servers: [server(1, null)],
      params: routeParametersFrom(mailParameters({ 'mail.catchall.domain': null })),
      expected: { serverId: 1, rule: 5, from: '"Bob" <bob@example.org>', envelopeFrom: 'bob@example.org', sendAs: 'from' },
    },
    {
      behaviour: 'rule 6: with no match and no empty filter the first server sends as notifications, with a warning',
      input: { from: 'Bob <bob@example.org>' },
      servers: [server(2, 'x.org'), server(1, 'y.org')],
      expected: {
        serverId: 1,
        rule: 6,
        from: '"Bob" <notifications@example.com>',
        replyTo: '"Bob" <bob@example.org>',
        envelopeFrom: 'notifications@example.com',
        sendAs: 'notifications',
        warnings: 1,
      },
    },
    {
      behaviour: 'rule 6: without a notifications address the first server sends as the From, with a warning',
      input: { from: 'bob@example.org' },
      servers: [server(1, 'x.org')],
      params: { defaultFrom: null },
      expected: { serverId: 1, rule: 6, from: 'bob@example.org', envelopeFrom: 'bob@example.org', sendAs: 'from', warnings: 1 },
    },
  ];
  for (const c of cases) it(c.behaviour, () => check(c));

  it('rule 7: without any active server the mail fails with no_server and says what to do', () => {
    for (const servers of [[], [server(1, null, { active: false })]]) {
      const d = failed(routeMail({ from: 'john@example.com' }, servers, params()));
      assert.equal(d.rule, 7);
      assert.equal(d.failureType, 'no_server');
      assert.match(d.reason, /^No outgoing mail server is configured \(or all are archived\): create one/);
    }
  });
});

describe('routeMail: the seed configurations', () => {
  const seed = routeParametersFrom(mailParameters({ 'mail.catchall.domain': 'example.com', 'mail.default.from': 'notifications' }));

  it('single server: a user mail goes through the notifications server as "John Doe" <notifications@example.com>, Reply-To the original', () => {
    const d = ok(routeMail({ from: '"John Doe" <john@example.com>' }, [server(1, 'notifications@example.com')], seed));
    assert.deepEqual(
      { serverId: d.serverId, rule: d.rule, from: d.from, replyTo: d.replyTo, sendAs: d.sendAs, warnings: d.warnings },
      { serverId: 1, rule: 3, from: '"John Doe" <notifications@example.com>', replyTo: '"John Doe" <john@example.com>', sendAs: 'notifications', warnings: [] },
    );
  });

  const multi = [server(1, 'john@example.com'), server(2, 'jane@example.com'), server(3, 'notifications@example.com')];
  const cases: Case[] = [
    {
      behaviour: "multiple users: john's mail goes through john's server unchanged",
      input: { from: '"John Doe" <john@example.com>' },
      servers: multi,
      expected: { serverId: 1, rule: 1, from: '"John Doe" <john@example.com>', envelopeFrom: 'john@example.com', sendAs: 'from' },
    },
    {
      behaviour: "multiple users: jane's mail goes through jane's server unchanged",
      input: { from: '"Jane Roe" <jane@example.com>' },
      servers: multi,
      expected: { serverId: 2, rule: 1, from: '"Jane Roe" <jane@example.com>', envelopeFrom: 'jane@example.com', sendAs: 'from' },
    },
    {
      // Every filter part is a full address, so no filter lists the domain example.com: rule 2 cannot apply.
      behaviour: 'multiple users: bob, who has no server, goes through the notifications server by rule 3 with his local part as name',
      input: { from: 'bob@example.com' },
      servers: multi,
      expected: {
        serverId: 3,
        rule: 3,
        from: '"bob" <notifications@example.com>',
        replyTo: 'bob@example.com',
        envelopeFrom: 'notifications@example.com',
        sendAs: 'notifications',
      },
    },
    {
      behaviour: 'multiple users: a notification from the notifications address itself is sent by rule 1 without rewrite',
      input: { from: 'My Company <notifications@example.com>' },
      servers: multi,
      expected: { serverId: 3, rule: 1, from: '"My Company" <notifications@example.com>', envelopeFrom: 'notifications@example.com', sendAs: 'from' },
    },
  ];
  for (const c of cases) it(c.behaviour, () => check({ ...c, params: seed }));
});

describe('routeMail: matching', () => {
  const cases: Case[] = [
    {
      behaviour: 'matches addresses case-insensitively and keeps the From as written',
      input: { from: 'John <JOHN@Example.COM>' },
      servers: [server(1, 'notifications@example.com'), server(2, 'John@EXAMPLE.com')],
      expected: { serverId: 2, rule: 1, from: '"John" <JOHN@Example.COM>', envelopeFrom: 'JOHN@Example.COM', sendAs: 'from' },
    },
    {
      behaviour: 'ignores a display name that looks like an address: "jane@example.com" <bob@example.com> routes as bob',
      input: { from: '"jane@example.com" <bob@example.com>' },
      servers: [server(1, 'jane@example.com'), server(2, 'bob@example.com')],
      expected: { serverId: 2, rule: 1, from: '"jane@example.com" <bob@example.com>', envelopeFrom: 'bob@example.com', sendAs: 'from' },
    },
    {
      behaviour: 'reads every part of a multi-part filter, ignoring spaces and empty parts',
      input: { from: 'bob@example.org' },
      servers: [server(1, 'notifications@example.com', { priority: 1 }), server(2, 'a@x.com, example.org ,, ')],
      expected: { serverId: 2, rule: 2, from: 'bob@example.org', envelopeFrom: 'bob@example.org', sendAs: 'from' },
    },
    {
      behaviour: 'does not let a domain part match a subdomain',
      input: { from: 'bob@mail.example.org' },
      servers: [server(1, 'example.org', { priority: 1 }), server(2, 'notifications@example.com')],
      expected: {
        serverId: 2,
        rule: 3,
        from: '"bob" <notifications@example.com>',
        replyTo: 'bob@mail.example.org',
        envelopeFrom: 'notifications@example.com',
        sendAs: 'notifications',
      },
    },
    {
      behaviour: 'does not let a domain part match a parent domain',
      input: { from: 'bob@example.org' },
      servers: [server(1, 'mail.example.org'), server(2, null, { priority: 20 })],
      expected: {
        serverId: 2,
        rule: 5,
        from: '"bob" <notifications@example.com>',
        replyTo: 'bob@example.org',
        envelopeFrom: 'notifications@example.com',
        sendAs: 'notifications',
      },
    },
    {
      behaviour: 'within a rule, picks the lowest priority, then the lowest id',
      input: { from: 'bob@example.org' },
      servers: [server(5, 'example.org', { priority: 2 }), server(4, 'example.org', { priority: 1 }), server(3, 'example.org', { priority: 1 })],
      expected: { serverId: 3, rule: 2, from: 'bob@example.org', envelopeFrom: 'bob@example.org', sendAs: 'from' },
    },
    {
      behaviour: 'ignores inactive servers, even when they would match better',
      input: { from: 'bob@example.org' },
      servers: [server(1, 'bob@example.org', { active: false }), server(2, 'example.org')],
      expected: { serverId: 2, rule: 2, from: 'bob@example.org', envelopeFrom: 'bob@example.org', sendAs: 'from' },
    },
    {
      behaviour: 'accepts mail.default.from given as a full address',
      input: { from: 'Bob <bob@example.org>' },
      servers: [server(1, 'other.net'), server(2, 'noreply@corp.example')],
      params: routeParametersFrom(mailParameters({ 'mail.catchall.domain': null, 'mail.default.from': 'noreply@corp.example' })),
      expected: {
        serverId: 2,
        rule: 3,
        from: '"Bob" <noreply@corp.example>',
        replyTo: '"Bob" <bob@example.org>',
        envelopeFrom: 'noreply@corp.example',
        sendAs: 'notifications',
      },
    },
    {
      behaviour: 'keeps a Reply-To the mail already has when it rewrites the From',
      input: { from: 'Bob <bob@example.org>', replyTo: 'Sales <sales@example.org>' },
      servers: [server(1, 'notifications@example.com')],
      expected: {
        serverId: 1,
        rule: 3,
        from: '"Bob" <notifications@example.com>',
        replyTo: 'Sales <sales@example.org>',
        envelopeFrom: 'notifications@example.com',
        sendAs: 'notifications',
      },
    },
    {
      behaviour: 'keeps a Reply-To the mail has when it sends as the From',
      input: { from: 'bob@example.org', replyTo: 'sales@example.org' },
      servers: [server(1, 'example.org')],
      expected: { serverId: 1, rule: 2, from: 'bob@example.org', replyTo: 'sales@example.org', envelopeFrom: 'bob@example.org', sendAs: 'from' },
    },
    {
      behaviour: 'does not rewrite nor add a Reply-To when the From is the notifications address and an empty filter is used',
      input: { from: 'Alerts <Notifications@Example.com>' },
      servers: [server(1, null)],
      expected: { serverId: 1, rule: 5, from: '"Alerts" <Notifications@Example.com>', envelopeFrom: 'Notifications@Example.com', sendAs: 'notifications' },
    },
    {
      behaviour: 'quotes and escapes a display name with specials in the rewritten From and the Reply-To',
      input: { from: '"Doe, \\"JD\\"" <jd@example.org>' },
      servers: [server(1, 'notifications@example.com')],
      expected: {
        serverId: 1,
        rule: 3,
        from: '"Doe, \\"JD\\"" <notifications@example.com>',
        replyTo: '"Doe, \\"JD\\"" <jd@example.org>',
        envelopeFrom: 'notifications@example.com',
        sendAs: 'notifications',
      },
    },
  ];
  for (const c of cases) it(c.behaviour, () => check(c));
});

describe('routeMail: envelope sender', () => {
  const bounce = routeParametersFrom(mailParameters({ 'mail.bounce.alias': 'bounce' }));
  const cases: Case[] = [
    {
      behaviour: 'uses the bounce address when the server filter lists it',
      input: { from: 'bob@example.org' },
      servers: [server(1, 'notifications@example.com, bounce@example.com')],
      expected: { serverId: 1, rule: 3, from: '"bob" <notifications@example.com>', replyTo: 'bob@example.org', envelopeFrom: 'bounce@example.com', sendAs: 'notifications' },
    },
    {
      behaviour: 'uses the bounce address when the server filter lists its domain',
      input: { from: 'john@example.com' },
      servers: [server(1, 'example.com')],
      expected: { serverId: 1, rule: 2, from: 'john@example.com', envelopeFrom: 'bounce@example.com', sendAs: 'from' },
    },
    {
      behaviour: 'uses the bounce address when the server filter is empty, as an empty filter admits every address',
      input: { from: 'john@example.com' },
      servers: [server(1, null)],
      expected: {
        serverId: 1,
        rule: 5,
        from: '"john" <notifications@example.com>',
        replyTo: 'john@example.com',
        envelopeFrom: 'bounce@example.com',
        sendAs: 'notifications',
      },
    },
    {
      behaviour: 'uses the sent From when the server filter does not admit the bounce address',
      input: { from: 'John <john@example.com>' },
      servers: [server(1, 'john@example.com')],
      expected: { serverId: 1, rule: 1, from: '"John" <john@example.com>', envelopeFrom: 'john@example.com', sendAs: 'from' },
    },
  ];
  for (const c of cases) it(c.behaviour, () => check({ ...c, params: bounce }));
});

describe('routeMail: forced and mass-mailing servers', () => {
  const servers = [server(1, 'notifications@example.com'), server(2, 'jane@example.com'), server(3, null), server(4, 'example.org', { active: false })];
  const dedicated = (id: number | null): Partial<RouteParameters> => ({ massMailingDedicated: true, massMailingServerId: id });
  const cases: Case[] = [
    {
      behaviour: 'a forced server is used and the From is kept, with a warning when its filter does not admit the From',
      input: { from: 'Bob <bob@example.org>', forcedServerId: 2 },
      servers,
      expected: { serverId: 2, rule: 'forced', from: '"Bob" <bob@example.org>', envelopeFrom: 'bob@example.org', sendAs: 'from', warnings: 1 },
    },
    {
      behaviour: 'a forced server with an empty filter keeps the From without a warning',
      input: { from: 'Bob <bob@example.org>', forcedServerId: 3 },
      servers,
      expected: { serverId: 3, rule: 'forced', from: '"Bob" <bob@example.org>', envelopeFrom: 'bob@example.org', sendAs: 'from' },
    },
    {
      behaviour: 'a forced server whose filter lists the From gives no warning',
      input: { from: 'jane@example.com', forcedServerId: 2 },
      servers,
      expected: { serverId: 2, rule: 'forced', from: 'jane@example.com', envelopeFrom: 'jane@example.com', sendAs: 'from' },
    },
    {
      behaviour: 'a mass mail goes through the dedicated server with an empty filter and keeps its From',
      input: { from: 'Newsletter <news@example.org>', massMailing: true },
      servers,
      params: dedicated(3),
      expected: { serverId: 3, rule: 'mass_mailing', from: '"Newsletter" <news@example.org>', envelopeFrom: 'news@example.org', sendAs: 'from' },
    },
    {
      behaviour: 'a mass mail through a dedicated server whose filter admits neither the From nor the notifications address keeps it, with a warning',
      input: { from: 'news@example.org', massMailing: true },
      servers,
      params: dedicated(2),
      expected: { serverId: 2, rule: 'mass_mailing', from: 'news@example.org', envelopeFrom: 'news@example.org', sendAs: 'from', warnings: 1 },
    },
    {
      behaviour: 'a mass mail through a dedicated server whose filter lists only the notifications address is sent as it, Reply-To the original',
      input: { from: 'Newsletter <news@example.org>', massMailing: true },
      servers: [server(1, 'notifications@example.com')],
      params: dedicated(1),
      expected: { serverId: 1, rule: 'mass_mailing', from: '"Newsletter" <notifications@example.com>', replyTo: '"Newsletter" <news@example.org>', envelopeFrom: 'notifications@example.com', sendAs: 'notifications' },
    },
    {
      behaviour: 'a mass mail is routed by the rules when the dedicated server setting is off',
      input: { from: 'news@example.org', massMailing: true },
      servers,
      params: { massMailingDedicated: false, massMailingServerId: 3 },
      expected: { serverId: 1, rule: 3, from: '"news" <notifications@example.com>', replyTo: 'news@example.org', envelopeFrom: 'notifications@example.com', sendAs: 'notifications' },
    },
    {
      behaviour: 'a mass mail is routed by the rules, with a warning, when the dedicated setting is on without a server id',
      input: { from: 'news@example.org', massMailing: true },
      servers,
      params: dedicated(null),
      expected: {
        serverId: 1,
        rule: 3,
        from: '"news" <notifications@example.com>',
        replyTo: 'news@example.org',
        envelopeFrom: 'notifications@example.com',
        sendAs: 'notifications',
        warnings: 1,
      },
    },
    {
      behaviour: 'an ordinary mail ignores the dedicated mass-mailing server',
      input: { from: 'jane@example.com' },
      servers,
      params: dedicated(3),
      expected: { serverId: 2, rule: 1, from: 'jane@example.com', envelopeFrom: 'jane@example.com', sendAs: 'from' },
    },
    {
      behaviour: 'a forced server gets the bounce address as envelope when its filter admits it',
      input: { from: 'bob@example.org', forcedServerId: 3 },
      servers,
      params: { bounceAddress: 'bounce@example.com' },
      expected: { serverId: 3, rule: 'forced', from: 'bob@example.org', envelopeFrom: 'bounce@example.com', sendAs: 'from' },
    },
  ];
  for (const c of cases) it(c.behaviour, () => check(c));

  const unavailable: Array<[string, RouteInput, Partial<RouteParameters>, RegExp]> = [
    ['a forced server that does not exist fails and names the id', { from: 'bob@example.org', forcedServerId: 99 }, {}, /server id 99.*no outgoing mail server has id 99/],
    ['a forced server that is archived fails and names it', { from: 'bob@example.org', forcedServerId: 4 }, {}, /server id 4.*example\.org \(id 4\) is archived/],
    ['a forced server that is inactive (not archived) says inactive', { from: 'bob@example.org', forcedServerId: 5 }, {}, /server id 5.*paused \(id 5\) is inactive/],
  ];
  const withPaused = [...servers, server(5, 'paused', { active: false, archived: false })];
  for (const [behaviour, input, over, reason] of unavailable) {
    it(behaviour, () => {
      const d = failed(routeMail(input, withPaused, params(over)));
      assert.equal(d.failureType, 'forced_server_unavailable');
      assert.equal(d.rule, 7);
      assert.match(d.reason, reason);
    });
  }

  // The mails wait (the dispatcher holds them): each reason names the server and both ways out.
  const waiting: Array<[string, number, RegExp, number | undefined]> = [
    ['a missing dedicated mass-mailing server names the id', 42, /^Mass mailings go through the dedicated server id 42 \(mass_mailing\.mail_server_id\), but no outgoing mail server has id 42: choose another server in Settings → Email Marketing/, undefined],
    ['an archived dedicated mass-mailing server is named and restore is offered', 4, /^Mass mailings go through the dedicated server "example\.org" \(id 4\), but it is archived: restore it .*, or choose another server in Settings → Email Marketing .*wait in the queue\.$/, 4],
    ['an inactive dedicated mass-mailing server is named as inactive', 5, /^Mass mailings go through the dedicated server "paused" \(id 5\), but it is inactive: make it active again .*, or choose another server in Settings → Email Marketing/, 5],
  ];
  for (const [behaviour, id, reason, serverId] of waiting) {
    it(`${behaviour}; the mail waits`, () => {
      const d = failed(routeMail({ from: 'bob@example.org', massMailing: true }, withPaused, params(dedicated(id))));
      assert.equal(d.failureType, 'mass_mailing_server_unavailable');
      assert.equal(d.serverId, serverId);
      assert.match(d.reason, reason);
      assert.deepEqual(d.explanation, [d.reason]);
    });
  }
});

describe('routeMail: unparsable From', () => {
  const inputs: Array<[string, string]> = [
    ['an empty From', ''],
    ['a From without an address', 'John Doe'],
    ['a From with two addresses', 'a@example.com, b@example.com'],
    ['a From carrying an injected header', 'John <john@example.com>\r\nBcc: victim@example.org'],
  ];
  for (const [behaviour, from] of inputs) {
    it(`fails ${behaviour} with invalid_from, before looking at servers`, () => {
      const d = failed(routeMail({ from, forcedServerId: 1 }, [server(1, null)], params()));
      assert.equal(d.failureType, 'invalid_from');
      assert.equal(d.rule, 7);
    });
  }
});

describe('routeMail: explanation', () => {
  it('says why every other server did not match and why the chosen one did', () => {
    const servers = [server(1, 'john@example.com'), server(2, 'jane@example.com'), server(3, 'notifications@example.com'), server(4, 'x.org', { active: false })];
    const d = ok(routeMail({ from: 'Jane <jane@example.com>' }, servers, params()));
    assert.deepEqual(d.explanation, [
      'john@example.com (id 1): filter john@example.com does not list jane@example.com or example.com, nor the notifications address notifications@example.com',
      'jane@example.com (id 2): chosen by rule 1: its filter lists the From address jane@example.com; sending as the From jane@example.com',
      'notifications@example.com (id 3): matches only rule 3 (its filter lists the notifications address notifications@example.com); rule 1 takes precedence',
      'x.org (id 4): archived, not considered',
      'From kept: "Jane" <jane@example.com>',
      'Envelope sender jane@example.com: no bounce address is configured (mail.bounce.alias not set)',
    ]);
  });

  it('names the later server of the same rule as losing on priority and id, and states the rewrite', () => {
    const d = ok(routeMail({ from: 'bob@example.org' }, [server(1, null), server(2, null)], params()));
    assert.equal(d.explanation[1], 'server 2 (id 2): also matches rule 5 (its filter is empty, which admits every address), but server 1 (id 1) comes first by priority and id');
    assert.equal(d.explanation[2], 'From rewritten to "bob" <notifications@example.com>; Reply-To set to the original From bob@example.org');
  });
});

describe('parseFromFilter', () => {
  const cases: Array<[string, string | null, string[]]> = [
    ['gives no parts for null', null, []],
    ['gives no parts for blanks and commas only', ' , ,', []],
    ['trims, lower-cases and drops empty parts', 'A@X.com, Example.ORG ,, ', ['a@x.com', 'example.org']],
    ['writes an internationalised domain as xn--, the form From addresses are compared in', 'exämple.com', ['xn--exmple-cua.com']],
  ];
  for (const [behaviour, filter, expected] of cases) it(behaviour, () => assert.deepEqual(parseFromFilter(filter), expected));
});

describe('filterMatches', () => {
  const cases: Array<[string, string[], string, ReturnType<typeof filterMatches>]> = [
    ['matches an address part exactly', ['john@example.com'], 'john@example.com', 'address'],
    ['matches whatever the case of the address', ['john@example.com'], 'JOHN@Example.COM', 'address'],
    ['matches a domain part against the domain', ['example.com'], 'bob@example.com', 'domain'],
    ['prefers the address when both kinds of part match', ['example.com', 'bob@example.com'], 'bob@example.com', 'address'],
    ['matches everything when there are no parts', [], 'anyone@anywhere.net', 'empty'],
    ['does not match a subdomain', ['example.com'], 'bob@mail.example.com', null],
    ['does not match an address part against the domain', ['john@example.com'], 'bob@example.com', null],
    ['does not match on the display name', ['jane@example.com'], '"jane@example.com" <bob@example.com>', null],
  ];
  for (const [behaviour, parts, address, expected] of cases) it(behaviour, () => assert.equal(filterMatches(parts, address), expected));
});

describe('routeParametersFrom', () => {
  it('derives the notifications and bounce addresses from the system parameters', () => {
    assert.deepEqual(routeParametersFrom(mailParameters({ 'mail.bounce.alias': 'bounce', 'mass_mailing.outgoing_mail_server': 'true', 'mass_mailing.mail_server_id': '7' })), {
      defaultFrom: 'notifications@example.com',
      bounceAddress: 'bounce@example.com',
      massMailingDedicated: true,
      massMailingServerId: 7,
    });
  });
});

describe('routeMail: personal servers carry only their owner\'s own mail (issue 8)', () => {
  // alice (user 7) and bob (user 8) are users; user 1 is an admin.
  const alice = { userId: 7, address: 'alice@example.org', isAdmin: false };
  const adminOwner = { userId: 1, address: 'admin@example.org', isAdmin: true };
  const personal = (id: number, fromFilter: string | null, extra: Partial<RoutableServer> = {}): RoutableServer => server(id, fromFilter, { name: `personal ${id}`, owner: alice, ...extra });
  const shared = (id: number, fromFilter: string | null, extra: Partial<RoutableServer> = {}): RoutableServer => server(id, fromFilter, { name: `shared ${id}`, ...extra });

  interface PersonalCase {
    behaviour: string;
    input: RouteInput;
    servers: RoutableServer[];
    params?: Partial<RouteParameters>;
    /** The server and rule chosen, or the failure type. */
    expected: { serverId: number; rule: RouteDecision['rule'] } | { failureType: 'no_server' | 'forced_server_unavailable' };
    /** Text the explanation (or the failure reason) must contain. */
    says?: RegExp;
  }

  const fromAlice = { from: 'Alice <alice@example.org>', createdByUserId: 7 };
  const cases: PersonalCase[] = [
    // Rule 1: the filter lists the From address.
    { behaviour: 'rule 1, personal: the owner\'s own mail goes through their server', input: fromAlice, servers: [shared(1, null), personal(2, 'alice@example.org')], expected: { serverId: 2, rule: 1 } },
    { behaviour: 'rule 1, shared: a shared server listing the address still wins at rule 1', input: fromAlice, servers: [shared(1, 'alice@example.org'), personal(2, null)], expected: { serverId: 1, rule: 1 } },
    {
      behaviour: 'rule 1, personal: a mail From the owner but enqueued by an admin is not the owner\'s own mail',
      input: { from: 'alice@example.org', createdByUserId: 1 },
      servers: [shared(1, null), personal(2, 'alice@example.org')],
      expected: { serverId: 1, rule: 5 },
      says: /personal 2 \(id 2\): personal server, not used: .*sent by user id 1/,
    },
    {
      behaviour: 'rule 1, personal: a mail From the owner enqueued by no user (a script) does not use it',
      input: { from: 'alice@example.org', createdByUserId: null },
      servers: [shared(1, null), personal(2, 'alice@example.org')],
      expected: { serverId: 1, rule: 5 },
      says: /sent not by a user/,
    },
    {
      behaviour: 'rule 1, personal: a filter listing someone else (set by an admin) does not let the owner send as them',
      input: { from: 'bob@example.org', createdByUserId: 7 },
      servers: [shared(1, null), personal(2, 'bob@example.org')],
      expected: { serverId: 1, rule: 5 },
      says: /may send only as their own address, not as bob@example\.org/,
    },
    {
      behaviour: 'rule 1, priority game: priority 0 does not put a personal server ahead of a shared one of the same rule',
      input: fromAlice,
      servers: [shared(1, 'alice@example.org', { priority: 10_000 }), personal(2, 'alice@example.org', { priority: 0 })],
      expected: { serverId: 1, rule: 1 },
      says: /shared servers come before personal ones within a rule/,
    },
    // Rule 2: the filter lists the From domain.
    { behaviour: 'rule 2, personal: the owner\'s own mail through a server listing their domain', input: fromAlice, servers: [shared(1, null), personal(2, 'example.org')], expected: { serverId: 2, rule: 2 } },
    { behaviour: 'rule 2, shared: a shared server listing the domain', input: { from: 'carol@example.org', createdByUserId: 9 }, servers: [shared(1, 'example.org'), personal(2, 'example.org', { priority: 0 })], expected: { serverId: 1, rule: 2 } },
    {
      behaviour: 'rule 2, personal: another address of the listed domain is refused, even sent by the owner',
      input: { from: 'carol@example.org', createdByUserId: 7 },
      servers: [personal(2, 'example.org'), shared(1, 'x.test', { priority: 50 })],
      expected: { serverId: 1, rule: 6 },
      says: /not as carol@example\.org/,
    },
    {
      behaviour: 'rule 2, personal of an admin: its owner may send as anyone of the domain',
      input: { from: 'carol@example.org', createdByUserId: 1 },
      servers: [shared(1, null), personal(2, 'example.org', { owner: adminOwner })],
      expected: { serverId: 2, rule: 2 },
    },
    {
      behaviour: 'rule 2, priority game: shared before personal within rule 2 whatever the priorities',
      input: fromAlice,
      servers: [personal(2, 'example.org', { priority: 0 }), shared(1, 'example.org', { priority: 9_999 })],
      expected: { serverId: 1, rule: 2 },
    },
    // Rules 3 and 4: the notifications address or its domain; never a personal server.
    { behaviour: 'rule 3, shared: the notifications server', input: { from: 'bob@other.test', createdByUserId: 8 }, servers: [shared(1, 'notifications@example.com'), shared(3, 'x.test')], expected: { serverId: 1, rule: 3 } },
    {
      behaviour: 'rule 3, personal: a personal server listing the notifications address is never the notifications fallback',
      input: { from: 'bob@other.test', createdByUserId: 8 },
      servers: [personal(2, 'notifications@example.com', { priority: 0 }), shared(3, 'x.test')],
      expected: { serverId: 3, rule: 6 },
      says: /never a fallback/,
    },
    {
      behaviour: 'rule 3, personal: not even for the owner\'s own mail',
      input: fromAlice,
      servers: [personal(2, 'notifications@example.com', { priority: 0 }), shared(3, 'x.test')],
      expected: { serverId: 3, rule: 6 },
    },
    { behaviour: 'rule 4, shared: the notifications domain', input: { from: 'bob@other.test', createdByUserId: 8 }, servers: [shared(1, 'example.com'), shared(3, null)], expected: { serverId: 1, rule: 4 } },
    {
      behaviour: 'rule 4, personal: a personal server listing the notifications domain is skipped',
      input: { from: 'bob@other.test', createdByUserId: 8 },
      servers: [personal(2, 'example.com', { priority: 0 }), shared(3, null)],
      expected: { serverId: 3, rule: 5 },
    },
    // Rule 5: an empty filter.
    { behaviour: 'rule 5, shared: the first shared server with an empty filter', input: { from: 'bob@other.test', createdByUserId: 8 }, servers: [shared(1, null)], expected: { serverId: 1, rule: 5 } },
    {
      behaviour: 'rule 5, personal: a personal server with an empty filter (made by an admin) carries nobody\'s mail as a catch-all',
      input: fromAlice,
      servers: [personal(2, null, { priority: 0 }), shared(3, 'x.test')],
      expected: { serverId: 3, rule: 6 },
    },
    // Rule 6: the first server at all.
    { behaviour: 'rule 6, shared: the first shared server', input: { from: 'bob@other.test', createdByUserId: 8 }, servers: [shared(1, 'x.test')], expected: { serverId: 1, rule: 6 } },
    {
      behaviour: 'rule 6, personal: a personal server first by priority is not "the first server"',
      input: { from: 'bob@other.test', createdByUserId: 8 },
      servers: [personal(2, 'alice@example.org', { priority: 0 }), shared(3, 'x.test', { priority: 99 })],
      expected: { serverId: 3, rule: 6 },
    },
    {
      behaviour: 'rule 7: with only a personal server, other people\'s mail fails with no_server rather than use it',
      input: { from: 'bob@other.test', createdByUserId: 8 },
      servers: [personal(2, 'alice@example.org')],
      expected: { failureType: 'no_server' },
      says: /only personal servers are active/,
    },
    {
      behaviour: 'rule 7: a personal server whose owner is gone (no address) carries nothing',
      input: fromAlice,
      servers: [personal(2, 'alice@example.org', { owner: { userId: 7, address: null, isAdmin: false } })],
      expected: { failureType: 'no_server' },
    },
    // Forced.
    { behaviour: 'forced, personal: the owner may force their own server', input: { ...fromAlice, forcedServerId: 2 }, servers: [shared(1, null), personal(2, 'alice@example.org')], expected: { serverId: 2, rule: 'forced' } },
    { behaviour: 'forced, shared: any shared server may be forced', input: { from: 'bob@other.test', createdByUserId: 8, forcedServerId: 1 }, servers: [shared(1, 'x.test'), personal(2, 'alice@example.org')], expected: { serverId: 1, rule: 'forced' } },
    {
      behaviour: 'forced, personal: another user\'s mail forced through it fails',
      input: { from: 'bob@other.test', createdByUserId: 8, forcedServerId: 2 },
      servers: [shared(1, null), personal(2, 'alice@example.org')],
      expected: { failureType: 'forced_server_unavailable' },
      says: /is a personal server and .*sent by user id 8/,
    },
    {
      behaviour: 'forced, personal: an admin forcing a mail From the owner through it fails too',
      input: { from: 'alice@example.org', createdByUserId: 1, forcedServerId: 2 },
      servers: [shared(1, null), personal(2, 'alice@example.org')],
      expected: { failureType: 'forced_server_unavailable' },
    },
    // Mass mailing.
    {
      behaviour: 'mass mailing, personal dedicated server: refused',
      input: { from: 'alice@example.org', createdByUserId: 7, massMailing: true },
      servers: [shared(1, null), personal(2, 'alice@example.org')],
      params: { massMailingDedicated: true, massMailingServerId: 2 },
      expected: { failureType: 'forced_server_unavailable' },
      says: /mass mailings never go through a personal server/,
    },
    {
      behaviour: 'mass mailing, shared dedicated server: used',
      input: { from: 'news@example.org', createdByUserId: 1, massMailing: true },
      servers: [shared(1, null), personal(2, 'news@example.org', { owner: adminOwner })],
      params: { massMailingDedicated: true, massMailingServerId: 1 },
      expected: { serverId: 1, rule: 'mass_mailing' },
    },
    {
      behaviour: 'mass mailing routed by rules: a personal server matching at rule 1 is still skipped',
      input: { from: 'alice@example.org', createdByUserId: 7, massMailing: true },
      servers: [personal(2, 'alice@example.org'), shared(1, 'x.test')],
      expected: { serverId: 1, rule: 6 },
      says: /mass mailings never go through a personal server/,
    },
  ];

  for (const c of cases) {
    it(c.behaviour, () => {
      const d = routeMail(c.input, c.servers, params(c.params));
      const text = d.ok ? d.explanation.join('\n') : `${d.reason}\n${d.explanation.join('\n')}`;
      if ('failureType' in c.expected) {
        assert.equal(failed(d).failureType, c.expected.failureType, text);
      } else {
        const r = ok(d);
        assert.deepEqual({ serverId: r.serverId, rule: r.rule }, c.expected, text);
      }
      if (c.says) assert.match(text, c.says);
    });
  }

  it('a shared-only configuration routes exactly as before (no owner means shared)', () => {
    const d = ok(routeMail({ from: 'bob@other.test' }, [server(1, 'x.test'), server(2, null)], params()));
    assert.deepEqual([d.serverId, d.rule], [2, 5]);
  });
});
