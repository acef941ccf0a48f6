// Browser sessions. The cookie holds a random token; the database holds only its SHA-256, so a copy of the
// database cannot be replayed as a live session. Each session carries its own CSRF token.
import type { Kysely } from 'kysely';
import type { DB, User } from '../db/schema.js';
import { randomToken, sha256Hex } from '../vault/hmac.js';

export const SESSION_TTL_MS = 12 * 60 * 60 * 1000;
/** last_seen_at / expiry are refreshed at most this often, so page loads do not each write to the database. */
const TOUCH_INTERVAL_MS = 60 * 1000;

export interface NewSession {
  token: string;
  csrfToken: string;
  expiresAt: number;
}

export class Sessions {
  constructor(private readonly db: Kysely<DB>) {}

  async create(userId: number, now = Date.now()): Promise<NewSession> {
    const token = randomToken(32);
    const csrfToken = randomToken(24);
    const expiresAt = now + SESSION_TTL_MS;
    await this.db
      .insertInto('sessions')
      .values({ id: sha256Hex(token), user_id: userId, csrf_token: csrfToken, created_at: now, expires_at: expiresAt, last_seen_at: now })
      .execute();
    return { token, csrfToken, expiresAt };
  }

  /** The session's user for a cookie token, or undefined when unknown, expired or the user is disabled. */
  async resolve(token: string, now = Date.now()): Promise<{ user: User; sessionId: string; csrfToken: string } | undefined> {
    const id = sha256Hex(token);
    const row = await this.db
      .selectFrom('sessions')
      .innerJoin('users', 'users.id', 'sessions.user_id')
      .selectAll('users')
      .select(['sessions.csrf_token', 'sessions.expires_at', 'sessions.last_seen_at'])
      .where('sessions.id', '=', id)
      .executeTakeFirst();
    if (!row || row.expires_at <= now || row.active !== 1) return undefined;
    if (now - row.last_seen_at > TOUCH_INTERVAL_MS) {
      // Sliding expiry: an active admin is not signed out mid-task.
      await this.db.updateTable('sessions').set({ last_seen_at: now, expires_at: now + SESSION_TTL_MS }).where('id', '=', id).execute();
    }
    const { csrf_token, expires_at: _e, last_seen_at: _l, ...user } = row;
    return { user, sessionId: id, csrfToken: csrf_token };
  }

  async destroy(token: string): Promise<void> {
    await this.db.deleteFrom('sessions').where('id', '=', sha256Hex(token)).execute();
  }

  async purgeExpired(now = Date.now()): Promise<number> {
    const r = await this.db.deleteFrom('sessions').where('expires_at', '<=', now).executeTakeFirst();
    return Number(r.numDeletedRows);
  }
}
