import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Database } from '../db/database.js';
import type { OutgoingServer } from '../db/schema.js';
import { isAppError } from '../lib/errors.js';
import type { MailTransport } from '../outgoing/mail-transport.js';
import type { SmtpTransportOptions } from '../outgoing/smtp-transport.js';
import { TransportPool } from '../outgoing/transport-pool.js';
import { dialects, freshDatabase } from '../../test/helpers/databases.js';
import { HostGuard, HostLookupError, machineAddresses } from './host-guard.js';
import { ownAddressKey } from './host-policy.js';

/** DNS as a script: each name answers its lists in turn, the last repeating; unknown names do not exist. */
function script(answers: Record<string, string[][]>) {
  const asked: string[] = [];
  const used = new Map<string, number>();
  const resolve = async (host: string): Promise<string[]> => {
    asked.push(host);
    const list = answers[host];
    if (!list) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    const n = used.get(host) ?? 0;
    used.set(host, n + 1);
    return list[Math.min(n, list.length - 1)]!;
  };
  return { resolve, asked };
}

const code = (err: unknown): string | undefined => (isAppError(err) ? err.code : (err as { code?: string }).code);

for (const dialect of dialects) {
  describe(`HostGuard and the transport pool (${dialect})`, () => {
    let database: Database;
    let adminId: number;
    let userId: number;

    before(async () => {
      database = await freshDatabase(dialect);
      const add = async (login: string, role: 'admin' | 'user') =>
        (
          await database.db
            .insertInto('users')
            .values({ login, email: `${login}@example.com`, name: login, password_hash: null, role, active: 1, created_at: 0, updated_at: 0 })
            .returning('id')
            .executeTakeFirstOrThrow()
        ).id;
      adminId = await add('admin', 'admin');
      userId = await add('user', 'user');
    });
    after(async () => {
      await database.close();
    });

    const allow = async (value: string | null) => {
      await database.db.deleteFrom('parameters').where('key', '=', 'mail.server.allowed_private_hosts').execute();
      if (value !== null) await database.db.insertInto('parameters').values({ key: 'mail.server.allowed_private_hosts', value, updated_at: 0 }).execute();
    };

    it("refuses a user's server at one of this machine's own public addresses, read from its interfaces", async () => {
      assert.ok(machineAddresses().has(ownAddressKey('127.0.0.1')), "this machine's interfaces are read (loopback among them)");
      const dns = script({ 'vps.example.test': [['93.184.216.34']] });
      const guard = new HostGuard(database.db, dns.resolve, () => new Set([ownAddressKey('93.184.216.34')]));
      await assert.rejects(guard.connectTarget({ host: 'vps.example.test', port: 587, owner_user_id: userId }, 'x'), (err) => code(err) === 'JUNIPER_ERR_HOST_NOT_ALLOWED');
      await assert.rejects(guard.assertMaySave({ host: '93.184.216.34', port: 587 }, userId, 'x'), /an address of this machine/);
      assert.equal(await guard.connectTarget({ host: 'vps.example.test', port: 587, owner_user_id: adminId }, 'x'), undefined, "an admin's server is not checked");
      assert.deepEqual(await guard.check('vps.example.test', 'webhook'), { address: '93.184.216.34', servername: 'vps.example.test' }, 'a webhook may call an app on this machine by its public name');
    });

    it('leaves shared and admin-owned servers alone: no lookup, no target', async () => {
      const dns = script({});
      const guard = new HostGuard(database.db, dns.resolve);
      assert.equal(await guard.connectTarget({ host: '127.0.0.1', port: 587, owner_user_id: null }, 'x'), undefined);
      assert.equal(await guard.connectTarget({ host: 'internal.test', port: 587, owner_user_id: adminId }, 'x'), undefined);
      await guard.assertMaySave({ host: '169.254.169.254', port: 587 }, adminId, 'x');
      assert.deepEqual(dns.asked, []);
    });

    it("checks a user's server: public passes with the name kept for TLS, private is refused, the allow-list admits it", async () => {
      const dns = script({ 'smtp.public.test': [['93.184.216.34']], 'smtp.internal.test': [['10.1.2.3']] });
      const guard = new HostGuard(database.db, dns.resolve);
      assert.deepEqual(await guard.connectTarget({ host: 'SMTP.Public.test.', port: 587, owner_user_id: userId }, 'x'), { address: '93.184.216.34', servername: 'smtp.public.test' });
      await assert.rejects(guard.connectTarget({ host: 'smtp.internal.test', port: 587, owner_user_id: userId }, 'outgoing mail server'), (err) => {
        assert.equal(code(err), 'JUNIPER_ERR_HOST_NOT_ALLOWED');
        assert.match((err as Error).message, /outgoing mail server host smtp\.internal\.test resolves to an address that is not public.*mail\.server\.allowed_private_hosts/);
        assert.doesNotMatch(JSON.stringify({ message: (err as Error).message, details: (err as { details?: unknown }).details }), /10\.1\.2\.3/);
        return true;
      });
      await allow('10.0.0.0/8');
      assert.deepEqual(await guard.connectTarget({ host: 'smtp.internal.test', port: 587, owner_user_id: userId }, 'x'), { address: '10.1.2.3', servername: 'smtp.internal.test' });
      // A literal address needs no lookup and has no name for TLS.
      assert.deepEqual(await guard.connectTarget({ host: '10.9.9.9', port: 587, owner_user_id: userId }, 'x'), { address: '10.9.9.9' });
      await allow('not a host/99');
      await assert.rejects(guard.connectTarget({ host: '10.9.9.9', port: 587, owner_user_id: userId }, 'x'), (err) => code(err) === 'JUNIPER_ERR_HOST_NOT_ALLOWED');
      await allow(null);
    });

    it("refuses a user's server on a port off the list before any lookup, with the same message whatever the host; admins' servers are free", async () => {
      const ports = async (value: string | null) => {
        await database.db.deleteFrom('parameters').where('key', '=', 'mail.server.allowed_ports').execute();
        if (value !== null) await database.db.insertInto('parameters').values({ key: 'mail.server.allowed_ports', value, updated_at: 0 }).execute();
      };
      const dns = script({ 'smtp.public.test': [['93.184.216.34']], 'smtp.internal.test': [['10.1.2.3']] });
      const guard = new HostGuard(database.db, dns.resolve);
      const refusal = async (run: Promise<unknown>) => {
        let caught: unknown;
        await run.catch((err: unknown) => (caught = err));
        assert.equal(code(caught), 'JUNIPER_ERR_PORT_NOT_ALLOWED', String(caught));
        return { message: (caught as Error).message, details: (caught as { details?: unknown }).details };
      };
      const what = 'outgoing mail server "mine" (id 3)';
      // A public host, a private one, one that does not resolve, a literal: one answer, and no DNS asked.
      const answers = [];
      for (const host of ['smtp.public.test', 'smtp.internal.test', 'nowhere.test', '127.0.0.1', '93.184.216.34']) {
        answers.push(await refusal(guard.connectTarget({ host, port: 22, owner_user_id: userId }, what)));
        answers.push(await refusal(guard.assertMaySave({ host, port: 22 }, userId, what)));
      }
      assert.equal(new Set(answers.map((a) => JSON.stringify(a))).size, 1, 'the refusal tells nothing about the host');
      assert.deepEqual(answers[0]!.details, { field: 'port', port: 22, parameter: 'mail.server.allowed_ports' });
      assert.match(answers[0]!.message, /^The outgoing mail server "mine" \(id 3\) uses port 22, .*allowed: 25, 143, 465, 587, 993, 2525.*Use 587 \(SMTP submission\) or 465 \(SMTP over TLS\), or ask an admin to add port 22 to the system parameter mail\.server\.allowed_ports\.$/);
      assert.deepEqual(dns.asked, [], 'refused before any lookup');
      // The mail ports pass to the host check; admin-owned and shared servers are not held to the list.
      assert.deepEqual(await guard.connectTarget({ host: 'smtp.public.test', port: 2525, owner_user_id: userId }, what), { address: '93.184.216.34', servername: 'smtp.public.test' });
      assert.equal(await guard.connectTarget({ host: 'smtp.public.test', port: 22, owner_user_id: adminId }, what), undefined);
      await guard.assertMaySave({ host: 'smtp.public.test', port: 22 }, adminId, what);
      await guard.assertMaySave({ host: 'smtp.public.test', port: 22 }, null, what);
      // An admin's list: widened, then narrowed below a port in use.
      await ports('22, 2525');
      assert.ok(await guard.connectTarget({ host: 'smtp.public.test', port: 22, owner_user_id: userId }, what));
      await refusal(guard.connectTarget({ host: 'smtp.public.test', port: 587, owner_user_id: userId }, what));
      // A stored value that no longer parses counts as unset: the mail ports.
      await ports('not ports');
      await refusal(guard.connectTarget({ host: 'smtp.public.test', port: 22, owner_user_id: userId }, what));
      assert.ok(await guard.connectTarget({ host: 'smtp.public.test', port: 587, owner_user_id: userId }, what));
      await ports(null);
    });

    it('refuses a name that cannot be resolved: a validation error at save, a DNS error at connect', async () => {
      const guard = new HostGuard(database.db, script({}).resolve);
      await assert.rejects(guard.assertMaySave({ host: 'nowhere.test', port: 587 }, userId, 'x'), (err) => code(err) === 'JUNIPER_ERR_VALIDATION' && /nowhere\.test could not be resolved \(ENOTFOUND\)/.test((err as Error).message));
      await assert.rejects(guard.connectTarget({ host: 'nowhere.test', port: 587, owner_user_id: userId }, 'x'), (err) => err instanceof HostLookupError && err.code === 'EDNS');
    });

    it('the pool connects to each checked address, rebuilds when the answer changes, and refuses a rebinding to loopback', async () => {
      const dns = script({ 'smtp.moving.test': [['10.0.0.1'], ['10.0.0.1'], ['10.0.0.2'], ['127.0.0.1']] });
      await allow('10.0.0.0/8');
      const made: (SmtpTransportOptions['target'] | undefined)[] = [];
      const fake = (_e: unknown, _c: unknown, _t: unknown, options: SmtpTransportOptions = {}): MailTransport => {
        made.push(options.target);
        return { send: async () => ({ accepted: ['x@client.test'], rejected: [], response: '250 ok' }), close: () => undefined };
      };
      const pool = new TransportPool(() => null, undefined, new HostGuard(database.db, dns.resolve), fake);
      const row = (id: number, owner: number | null) =>
        ({ id, name: `s${id}`, host: 'smtp.moving.test', port: 25, security: 'none', auth: 'none', allow_self_signed: 0, owner_user_id: owner, updated_at: 1 }) as OutgoingServer;
      const send = (server: OutgoingServer) => pool.get(server).send({ messageId: '<m@x>', from: 'a@b', to: ['x@client.test'], cc: [], bcc: [], subject: '', attachments: [] }, { from: 'a@b', to: ['x@client.test'] });
      const personal = row(1, userId);
      await send(personal);
      await send(personal);
      assert.deepEqual(made, [{ address: '10.0.0.1', servername: 'smtp.moving.test' }], 'same answer: same pool');
      await send(personal);
      assert.deepEqual(made.at(-1), { address: '10.0.0.2', servername: 'smtp.moving.test' }, 'new answer: new pool at the new address');
      await assert.rejects(send(personal), (err) => code(err) === 'JUNIPER_ERR_HOST_NOT_ALLOWED');
      assert.equal(made.length, 2, 'no transport was made for the loopback answer');
      // A shared server is not checked: nodemailer resolves its host itself.
      await send(row(2, null));
      assert.equal(made.at(-1), undefined);
      assert.equal(dns.asked.length, 4);
      pool.closeAll();
      await allow(null);
    });

    it('keeps the pool while its address is still among rotating answers, and lets a replaced pool finish its mails before it closes', async () => {
      const dns = script({ 'smtp.rotating.test': [['10.0.1.1', '10.0.1.2'], ['10.0.1.2', '10.0.1.1'], ['10.0.1.2', '10.0.1.1'], ['10.0.1.3']] });
      await allow('10.0.0.0/8');
      const made: { address?: string; closedWith: number; open: number }[] = [];
      const pending: (() => void)[] = [];
      const fake = (_e: unknown, _c: unknown, _t: unknown, options: SmtpTransportOptions = {}): MailTransport => {
        const me = { address: options.target?.address, closedWith: -1, open: 0 };
        made.push(me);
        return {
          send: async () => {
            me.open++;
            await new Promise<void>((resolve) => pending.push(resolve));
            me.open--;
            return { accepted: ['x@client.test'], rejected: [], response: '250 ok' };
          },
          close: () => {
            me.closedWith = me.open;
          },
        };
      };
      const pool = new TransportPool(() => null, undefined, new HostGuard(database.db, dns.resolve), fake);
      const server = { id: 3, name: 's3', host: 'smtp.rotating.test', port: 25, security: 'none', auth: 'none', allow_self_signed: 0, owner_user_id: userId, updated_at: 1 } as OutgoingServer;
      const send = () => pool.get(server).send({ messageId: '<m@x>', from: 'a@b', to: ['x@client.test'], cc: [], bcc: [], subject: '', attachments: [] }, { from: 'a@b', to: ['x@client.test'] });
      // A send has passed the address check and reached its transport once it waits there (not a guessed delay:
      // a loaded machine took longer than 20 ms).
      const reached = async (n: number) => {
        for (const deadline = Date.now() + 10_000; pending.length < n; await new Promise((resolve) => setTimeout(resolve, 2))) {
          if (Date.now() > deadline) throw new Error(`send ${n} never reached a transport`);
        }
      };
      const first = send();
      await reached(1);
      const second = send();
      await reached(2);
      const third = send();
      await reached(3);
      assert.equal(made.length, 1, 'the same pool while its address is among the answers, in whatever order they come');
      assert.equal(made[0]!.address, '10.0.1.1');
      // The name now answers another address only: a new pool, and the old one is not closed under its mails.
      const fourth = send();
      await reached(4);
      assert.equal(made.length, 2);
      assert.equal(made[1]!.address, '10.0.1.3');
      assert.equal(made[0]!.closedWith, -1, 'the replaced pool is not closed while mails handed to it are under way');
      for (const release of pending.splice(0)) release();
      await Promise.all([first, second, third, fourth]);
      assert.equal(made[0]!.closedWith, 0, 'closed once its last mail was done');
      pool.closeAll();
      await allow(null);
    });
  });
}
