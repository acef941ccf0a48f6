// Table types for Kysely. Conventions, the same on SQLite and PostgreSQL:
// - times are epoch milliseconds in bigint columns (read back as numbers on both dialects);
// - booleans are integers 0/1 (SQLite has no boolean type; one representation keeps queries portable);
// - secrets are stored only as vault ciphertext strings (columns named *_enc).
import type { Generated, Insertable, Selectable, Updateable } from 'kysely';

export interface ParametersTable {
  key: string;
  value: string;
  updated_at: number;
}

export interface SettingsTable {
  key: string;
  /** JSON text; secret settings hold a JSON string of vault ciphertext. */
  value: string;
  updated_at: number;
}

export type Role = 'admin' | 'user';

export interface UsersTable {
  id: Generated<number>;
  /** Stored lower-case; unique. */
  login: string;
  email: string;
  name: string;
  password_hash: string | null;
  role: Role;
  active: number;
  created_at: number;
  updated_at: number;
}

export interface SessionsTable {
  /** SHA-256 of the cookie token: a stolen database does not hand out live sessions. */
  id: string;
  user_id: number;
  csrf_token: string;
  created_at: number;
  expires_at: number;
  last_seen_at: number;
}

export interface ApiKeysTable {
  id: Generated<number>;
  user_id: number;
  name: string;
  /** The first characters of the key, shown in lists so a key can be recognised without revealing it. */
  prefix: string;
  key_hash: string;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

export interface AuditLogTable {
  id: Generated<number>;
  at: number;
  actor_user_id: number | null;
  /** Who acted: a login, or `cli` for the command line. */
  actor: string;
  action: string;
  target: string;
  /** JSON; never holds secret values. */
  details: string | null;
}

export interface DB {
  parameters: ParametersTable;
  settings: SettingsTable;
  users: UsersTable;
  sessions: SessionsTable;
  api_keys: ApiKeysTable;
  audit_log: AuditLogTable;
}

export type User = Selectable<UsersTable>;
export type NewUser = Insertable<UsersTable>;
export type UserUpdate = Updateable<UsersTable>;
export type Session = Selectable<SessionsTable>;
export type ApiKey = Selectable<ApiKeysTable>;
export type AuditEntry = Selectable<AuditLogTable>;
