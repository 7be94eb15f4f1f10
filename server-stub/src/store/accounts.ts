import { dialects, type Store } from './database.js';

export type Role = 'admin' | 'operator' | 'viewer';
export type Language = 'en' | 'de';

export interface AccountRow {
  id: number;
  uuid: string;
  name: string;
  settings: string;
  created_at: number;
}

export interface UserRow {
  id: number;
  uuid: string;
  account_id: number;
  username: string;
  password_hash: string;
  role: Role;
  profile: string;
  language: Language;
  failed_logins: number;
  locked_until: number | null;
  created_at: number;
}

export interface ApiTokenRow {
  id: number;
  uuid: string;
  account_id: number;
  user_id: number;
  name: string;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

/** Accounts (tenants). Not scoped: used by the CLI, authentication and the account routes. */
export class Accounts {
  constructor(private readonly store: Store) {}

  insert(a: { uuid: string; name: string; settings: Record<string, unknown> }, now: number): number {
    return Number(
      this.store
        .stmt<{ id: number }>('INSERT INTO accounts (uuid, name, settings, created_at) VALUES (?, ?, ?, ?) RETURNING id')
        .get(a.uuid, a.name, JSON.stringify(a.settings), now)!.id,
    );
  }

  byId(id: number): AccountRow | undefined {
    return this.store.stmt<AccountRow>('SELECT * FROM accounts WHERE id = ?').get(id);
  }

  /** The public uuid of the account with row id `id`. */
  uuidOf(id: number): string | undefined {
    return this.store.stmt<{ uuid: string }>('SELECT uuid FROM accounts WHERE id = ?').get(id)?.uuid;
  }

  /** The row id of the account with this uuid. */
  idOf(uuid: string): number | undefined {
    return this.store.stmt<{ id: number }>('SELECT id FROM accounts WHERE uuid = ?').get(uuid)?.id;
  }

  update(id: number, patch: { name?: string; settings?: Record<string, unknown> }): void {
    this.store
      .stmt('UPDATE accounts SET name = COALESCE(?, name), settings = COALESCE(?, settings) WHERE id = ?')
      .run(patch.name ?? null, patch.settings ? JSON.stringify(patch.settings) : null, id);
  }
}

/** Lookups that establish who is calling; they necessarily cross accounts. */
export class Identities {
  constructor(private readonly store: Store) {}

  userByUsername(username: string): UserRow | undefined {
    return this.store
      .stmt<UserRow>(
        dialects({
          sqlite: 'SELECT * FROM users WHERE username = ?', // the column is COLLATE NOCASE
          postgres: 'SELECT * FROM users WHERE lower(username) = lower(?)', // the unique index is on lower(username)
        }),
      )
      .get(username);
  }

  userById(id: number): UserRow | undefined {
    return this.store.stmt<UserRow>('SELECT * FROM users WHERE id = ?').get(id);
  }

  /** The failed-login record of (user name as typed, client address), if any. */
  loginFailures(username: string, client: string): { failures: number; locked_until: number | null } | undefined {
    return this.store
      .stmt<{ failures: number; locked_until: number | null }>(
        'SELECT failures, locked_until FROM login_failures WHERE username = ? AND client = ?',
      )
      .get(username, client);
  }

  /**
   * Counts a failed login of (user name, client); the `maxFailures`-th in a row locks that pair
   * until `lockUntil`. A lock that ran out starts a fresh count. Returns the failures counted.
   */
  recordLoginFailure(username: string, client: string, maxFailures: number, lockUntil: number, now: number): number {
    const row = this.store
      .stmt<{ failures: number }>(
        `INSERT INTO login_failures AS f (username, client, failures, locked_until, last_at) VALUES (?, ?, 1, NULL, ?)
         ON CONFLICT (username, client) DO UPDATE SET
           failures = CASE WHEN f.locked_until IS NOT NULL AND f.locked_until <= excluded.last_at THEN 1 ELSE f.failures + 1 END,
           locked_until = CASE WHEN f.locked_until IS NOT NULL AND f.locked_until <= excluded.last_at THEN NULL ELSE f.locked_until END,
           last_at = excluded.last_at
         RETURNING failures`,
      )
      .get(username, client, now)!;
    if (row.failures >= maxFailures) {
      this.store
        .stmt('UPDATE login_failures SET locked_until = ? WHERE username = ? AND client = ?')
        .run(lockUntil, username, client);
    }
    return row.failures;
  }

  /** A successful login clears the count of that (user name, client) pair. */
  clearLoginFailures(username: string, client: string): void {
    this.store.stmt('DELETE FROM login_failures WHERE username = ? AND client = ?').run(username, client);
  }

  /** Drops failure records last touched before `before` (their locks ran out long ago). */
  purgeLoginFailures(before: number): number {
    return this.store
      .stmt('DELETE FROM login_failures WHERE last_at < ? AND (locked_until IS NULL OR locked_until < ?)')
      .run(before, before).changes;
  }

  insertSession(tokenHash: string, userId: number, expiresAt: number, now: number): void {
    this.store
      .stmt('INSERT INTO sessions (token_hash, user_id, expires_at, created_at) VALUES (?, ?, ?, ?)')
      .run(tokenHash, userId, expiresAt, now);
  }

  sessionUser(tokenHash: string, now: number): UserRow | undefined {
    return this.store
      .stmt<UserRow>(
        'SELECT u.* FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ? AND s.expires_at > ?',
      )
      .get(tokenHash, now);
  }

  /** When the session ends (epoch ms), or undefined when it is unknown or over. */
  sessionExpiresAt(tokenHash: string, now: number): number | undefined {
    return this.store
      .stmt<{ expires_at: number }>('SELECT expires_at FROM sessions WHERE token_hash = ? AND expires_at > ?')
      .get(tokenHash, now)?.expires_at;
  }

  deleteSession(tokenHash: string): void {
    this.store.stmt('DELETE FROM sessions WHERE token_hash = ?').run(tokenHash);
  }

  deleteExpiredSessions(now: number): number {
    return this.store.stmt('DELETE FROM sessions WHERE expires_at <= ?').run(now).changes;
  }

  apiTokenUser(tokenHash: string): { user: UserRow; tokenId: number } | undefined {
    const row = this.store
      .stmt<UserRow & { token_id: number }>(
        `SELECT u.*, t.id AS token_id FROM api_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = ? AND t.revoked_at IS NULL`,
      )
      .get(tokenHash);
    if (!row) return undefined;
    const { token_id, ...user } = row;
    return { user, tokenId: token_id };
  }

  touchApiToken(tokenId: number, now: number): void {
    // At most one write a minute per token: every write is an fsync with synchronous=FULL.
    this.store
      .stmt('UPDATE api_tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)')
      .run(now, tokenId, now - 60_000);
  }
}

/** Users of one account. */
export class AccountUsers {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  list(opts: { afterId: number; limit: number }): UserRow[] {
    return this.store
      .stmt<UserRow>('SELECT * FROM users WHERE account_id = ? AND id > ? ORDER BY id LIMIT ?')
      .all(this.accountId, opts.afterId, opts.limit);
  }

  byUuid(uuid: string): UserRow | undefined {
    return this.store.stmt<UserRow>('SELECT * FROM users WHERE account_id = ? AND uuid = ?').get(this.accountId, uuid);
  }

  byId(id: number): UserRow | undefined {
    return this.store.stmt<UserRow>('SELECT * FROM users WHERE account_id = ? AND id = ?').get(this.accountId, id);
  }

  count(): number {
    return this.store.stmt<{ n: number }>('SELECT COUNT(*) AS n FROM users WHERE account_id = ?').get(this.accountId)?.n ?? 0;
  }

  adminCount(): number {
    return (
      this.store
        .stmt<{ n: number }>('SELECT COUNT(*) AS n FROM users WHERE account_id = ? AND role = \'admin\'')
        .get(this.accountId)?.n ?? 0
    );
  }

  insert(
    u: {
      uuid: string;
      username: string;
      passwordHash: string;
      role: Role;
      profile: Record<string, unknown>;
      language: Language;
    },
    now: number,
  ): number {
    return Number(
      this.store
        .stmt<{ id: number }>(
          `INSERT INTO users (uuid, account_id, username, password_hash, role, profile, language, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
        )
        .get(u.uuid, this.accountId, u.username, u.passwordHash, u.role, JSON.stringify(u.profile), u.language, now)!.id,
    );
  }

  update(
    id: number,
    patch: { role?: Role; profile?: Record<string, unknown>; language?: Language; passwordHash?: string },
  ): void {
    this.store
      .stmt(
        `UPDATE users SET role = COALESCE(?, role), profile = COALESCE(?, profile), language = COALESCE(?, language),
           password_hash = COALESCE(?, password_hash) WHERE id = ? AND account_id = ?`,
      )
      .run(
        patch.role ?? null,
        patch.profile ? JSON.stringify(patch.profile) : null,
        patch.language ?? null,
        patch.passwordHash ?? null,
        id,
        this.accountId,
      );
  }

  delete(id: number): boolean {
    return this.store.stmt('DELETE FROM users WHERE id = ? AND account_id = ?').run(id, this.accountId).changes > 0;
  }

  /** Ends the user's login sessions (after a password change or deletion). */
  endSessions(id: number): void {
    this.store.stmt('DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE id = ? AND account_id = ?)').run(id, this.accountId);
  }
}

/** API tokens of one account. Only hashes are stored; the token itself is shown once. */
export class AccountApiTokens {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  list(opts: { afterId: number; limit: number }): ApiTokenRow[] {
    return this.store
      .stmt<ApiTokenRow>(
        `SELECT id, uuid, account_id, user_id, name, created_at, last_used_at, revoked_at FROM api_tokens
         WHERE account_id = ? AND id > ? ORDER BY id LIMIT ?`,
      )
      .all(this.accountId, opts.afterId, opts.limit);
  }

  byUuid(uuid: string): ApiTokenRow | undefined {
    return this.store
      .stmt<ApiTokenRow>(
        `SELECT id, uuid, account_id, user_id, name, created_at, last_used_at, revoked_at FROM api_tokens
         WHERE account_id = ? AND uuid = ?`,
      )
      .get(this.accountId, uuid);
  }

  insert(t: { uuid: string; userId: number; name: string; tokenHash: string }, now: number): void {
    this.store
      .stmt('INSERT INTO api_tokens (uuid, account_id, user_id, name, token_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(t.uuid, this.accountId, t.userId, t.name, t.tokenHash, now);
  }

  revoke(id: number, now: number): void {
    this.store
      .stmt('UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND account_id = ?')
      .run(now, id, this.accountId);
  }
}
