// First start without an admin: a one-time setup link is printed on the console (never a default
// password). The token lives only in this process's memory; a restart prints a new one.
import type { Actor } from '../audit/audit-log.js';
import { AppError } from '../lib/errors.js';
import { randomToken, sha256Hex, timingSafeEqualStr } from '../vault/hmac.js';
import type { NewUserInput, UserView, Users } from './users.js';

const setupActor: Actor = { userId: null, label: 'setup' };

const ADMIN_EXISTS =
  'Setup is done: an admin exists, so this link no longer works and no new one is printed. Sign in; an admin adds users on the Users page, or from the shell: juniper users create --login LOGIN --email EMAIL --admin.';

export class FirstRunSetup {
  private tokenHash: string | null = null;

  constructor(private readonly users: Users) {}

  /** A new setup token when no active admin exists, else null. */
  async issueIfNeeded(): Promise<string | null> {
    if ((await this.users.countActiveAdmins()) > 0) {
      this.tokenHash = null;
      return null;
    }
    const token = randomToken(24);
    this.tokenHash = sha256Hex(token);
    return token;
  }

  get pending(): boolean {
    return this.tokenHash !== null;
  }

  check(token: string): void {
    // No link is pending once an admin exists (a restart prints none then): the way on is to sign in.
    if (!this.tokenHash) throw new AppError('JUNIPER_ERR_SETUP_TOKEN', ADMIN_EXISTS);
    if (!timingSafeEqualStr(sha256Hex(token), this.tokenHash)) throw new AppError('JUNIPER_ERR_SETUP_TOKEN');
  }

  /** Creates the first admin with the token, which is then spent. */
  async complete(token: string, admin: Omit<NewUserInput, 'role'>): Promise<UserView> {
    this.check(token);
    if ((await this.users.countActiveAdmins()) > 0) {
      this.tokenHash = null;
      throw new AppError('JUNIPER_ERR_SETUP_TOKEN', ADMIN_EXISTS);
    }
    if (!admin.password) throw new AppError('JUNIPER_ERR_VALIDATION', 'Choose a password for the admin.');
    const user = await this.users.create({ ...admin, role: 'admin' }, setupActor);
    this.tokenHash = null;
    return user;
  }
}
