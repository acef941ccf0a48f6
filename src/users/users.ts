// Users and their roles. Logins are case-insensitive (stored lower-case); passwords only as scrypt hashes.
import { sql, type Kysely } from 'kysely';
import { z } from 'zod';
import type { Actor, AuditLog } from '../audit/audit-log.js';
import type { DB, Role, User } from '../db/schema.js';
import type { PrincipalUser } from './principal.js';
import { AppError } from '../lib/errors.js';
import { checkPasswordPolicy, dummyVerifyPassword, hashPassword, verifyPassword } from '../vault/password.js';
import { CONTROL_CHARACTERS_REFUSED, hasControlCharacters } from '../lib/plain-text.js';

export interface UserView {
  id: number;
  login: string;
  email: string;
  name: string;
  role: Role;
  active: boolean;
  createdAt: string;
}

export const loginSchema = z
  .string()
  .trim()
  .toLowerCase()
  .regex(/^[a-z0-9][a-z0-9._@-]{0,63}$/, 'a login is 1-64 letters, digits, dots, dashes, underscores or @, starting with a letter or digit');

export const newUserSchema = z.object({
  login: loginSchema,
  email: z.string().trim().toLowerCase().pipe(z.email('must be an email address such as jane@example.com')),
  name: z.string().trim().max(200).refine((s) => !hasControlCharacters(s), CONTROL_CHARACTERS_REFUSED).optional(),
  password: z.string().optional(),
  role: z.enum(['admin', 'user']).default('user'),
});
export type NewUserInput = z.input<typeof newUserSchema>;

export function toUserView(u: User): UserView {
  return {
    id: u.id,
    login: u.login,
    email: u.email,
    name: u.name,
    role: u.role,
    active: u.active === 1,
    createdAt: new Date(u.created_at).toISOString(),
  };
}

export function toPrincipalUser(u: User): PrincipalUser {
  return { id: u.id, login: u.login, email: u.email, name: u.name, role: u.role };
}

export class Users {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly audit: AuditLog,
    /** Told after a role or active flag changed, so caches of verified credentials forget the old user. */
    private readonly onAccessChanged: () => void = () => {},
  ) {}

  async create(input: NewUserInput, actor: Actor): Promise<UserView> {
    const parsed = newUserSchema.safeParse(input);
    if (!parsed.success) {
      const why = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
      throw new AppError('JUNIPER_ERR_VALIDATION', `Cannot create the user: ${why}`);
    }
    const u = parsed.data;
    if (u.password !== undefined) checkPasswordPolicy(u.password);
    if (await this.findByLogin(u.login)) {
      throw new AppError('JUNIPER_ERR_CONFLICT', `A user with login "${u.login}" already exists.`);
    }
    const now = Date.now();
    const passwordHash = u.password === undefined ? null : await hashPassword(u.password);
    const row = await this.db.transaction().execute(async (trx) => {
      const inserted = await trx
        .insertInto('users')
        .values({ login: u.login, email: u.email, name: u.name || u.login, password_hash: passwordHash, role: u.role, active: 1, created_at: now, updated_at: now })
        .returningAll()
        .executeTakeFirstOrThrow();
      await this.audit.record(actor, 'user.create', `user:${inserted.login}`, { role: inserted.role }, trx);
      return inserted;
    });
    return toUserView(row);
  }

  async setPassword(login: string, password: string, actor: Actor): Promise<void> {
    checkPasswordPolicy(password);
    const user = await this.requireByLogin(login);
    const passwordHash = await hashPassword(password);
    await this.db.transaction().execute(async (trx) => {
      await trx.updateTable('users').set({ password_hash: passwordHash, updated_at: Date.now() }).where('id', '=', user.id).execute();
      // A changed password ends every session of that user.
      await trx.deleteFrom('sessions').where('user_id', '=', user.id).execute();
      await this.audit.record(actor, 'user.password', `user:${user.login}`, undefined, trx);
    });
  }

  /** The user for a login and password, or JUNIPER_ERR_BAD_CREDENTIALS (the same for every kind of mismatch). */
  async authenticate(login: string, password: string): Promise<User> {
    const user = await this.findByLogin(login);
    if (!user || !user.password_hash || user.active !== 1) {
      // Same work as a real check, so response times do not tell which logins exist.
      await dummyVerifyPassword(password);
      throw new AppError('JUNIPER_ERR_BAD_CREDENTIALS');
    }
    if (!(await verifyPassword(password, user.password_hash))) throw new AppError('JUNIPER_ERR_BAD_CREDENTIALS');
    return user;
  }

  async findByLogin(login: string): Promise<User | undefined> {
    return this.db.selectFrom('users').selectAll().where('login', '=', login.trim().toLowerCase()).executeTakeFirst();
  }

  async requireByLogin(login: string): Promise<User> {
    const user = await this.findByLogin(login);
    if (!user) throw new AppError('JUNIPER_ERR_NOT_FOUND', `No user with login "${login}". List users with \`juniper users list\`.`);
    return user;
  }

  async findById(id: number): Promise<User | undefined> {
    return this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async list(): Promise<UserView[]> {
    const rows = await this.db.selectFrom('users').selectAll().orderBy('id').execute();
    return rows.map(toUserView);
  }

  async countActiveAdmins(): Promise<number> {
    const row = await this.db
      .selectFrom('users')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('role', '=', 'admin')
      .where('active', '=', 1)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /**
   * Changes a user's role or disables / enables them (the Users page). Disabling ends their sessions; the
   * last active admin can neither be disabled nor made a user, or nobody could manage Juniper any more.
   */
  async setAccess(login: string, change: { role?: Role; active?: boolean }, actor: Actor): Promise<UserView> {
    const user = await this.requireByLogin(login);
    const losesAdmin = user.role === 'admin' && user.active === 1 && (change.role === 'user' || change.active === false);
    const view = await this.db.transaction().execute(async (trx) => {
      // Touching every active admin's row first locks them (PostgreSQL), so two requests demoting the last two
      // admins at once run one after the other and the second sees the first's change; SQLite serialises writes.
      if (losesAdmin) await trx.updateTable('users').set({ updated_at: sql`updated_at` }).where('role', '=', 'admin').where('active', '=', 1).execute();
      const row = await trx
        .updateTable('users')
        .set({ ...(change.role ? { role: change.role } : {}), ...(change.active !== undefined ? { active: change.active ? 1 : 0 } : {}), updated_at: Date.now() })
        .where('id', '=', user.id)
        .returningAll()
        .executeTakeFirstOrThrow();
      if (losesAdmin) {
        const left = await trx.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')).where('role', '=', 'admin').where('active', '=', 1).executeTakeFirstOrThrow();
        if (Number(left.n) === 0) throw new AppError('JUNIPER_ERR_VALIDATION', `${user.login} is the last active admin: make another user an admin first.`);
      }
      if (change.active === false) await trx.deleteFrom('sessions').where('user_id', '=', user.id).execute();
      await this.audit.record(actor, 'user.access', `user:${user.login}`, { role: row.role, active: row.active === 1 }, trx);
      return toUserView(row);
    });
    this.onAccessChanged();
    return view;
  }
}
