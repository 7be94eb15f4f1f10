import { randomUUID } from 'node:crypto';
import type { Clock } from '../clock.js';
import { AppError } from '../errors.js';
import { entitlement } from '../licensing/rules.js';
import { Accounts, Identities, type Language, type Role, type UserRow } from '../store/accounts.js';
import type { Store } from '../store/database.js';
import { AccountLicences } from '../store/licences.js';
import { AccountScope } from '../store/scope.js';
import { LoginLimiter } from './login-limiter.js';
import { decoyHash, hashPassword, verifyPassword } from './password.js';
import { hashToken, newToken, tokenKind } from './tokens.js';

/** Who is calling: established once per request, then the only way handlers reach account data. */
export interface RequestContext {
  readonly accountId: number;
  readonly accountUuid: string;
  readonly userId: number;
  readonly userUuid: string;
  readonly username: string;
  readonly role: Role;
  readonly via: 'session' | 'api';
  readonly scope: AccountScope;
}

export const ROLE_RANK: Readonly<Record<Role, number>> = { viewer: 0, operator: 1, admin: 2 };

export interface AuthOptions {
  readonly sessionTtlSec: number;
  readonly loginMaxFailures: number;
  readonly loginLockoutSec: number;
  readonly loginRateLimitPerMinute: number;
  readonly scryptCost: number;
}

/** One failed login: the name as typed, the client address, the account when the name exists. */
export interface LoginFailure {
  readonly username: string;
  readonly client: string;
  readonly accountId: number | null;
  /** Failures in a row of this (name, client) pair, this one included. */
  readonly failures: number;
  readonly at: number;
}

export interface UserProfile {
  firstName?: string;
  lastName?: string;
  email?: string;
  phone?: string;
}

export class AuthService {
  readonly #ids: Identities;
  readonly #accounts: Accounts;
  readonly #limiter: LoginLimiter;
  #decoy: Promise<string> | undefined;
  #onFailure: ((failure: LoginFailure) => void) | undefined;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly options: AuthOptions,
  ) {
    this.#ids = new Identities(store);
    this.#accounts = new Accounts(store);
    this.#limiter = new LoginLimiter(options.loginRateLimitPerMinute);
  }

  scope(accountId: number): AccountScope {
    return new AccountScope(this.store, accountId);
  }

  /** Creates an account (tenant) with its first user, an admin. */
  async createAccount(input: {
    name: string;
    username: string;
    password: string;
    settings?: Record<string, unknown>;
    profile?: UserProfile;
    language?: Language;
  }): Promise<{ accountId: number; accountUuid: string; userUuid: string }> {
    const passwordHash = await hashPassword(input.password, this.options.scryptCost);
    const now = this.clock.now();
    const accountUuid = randomUUID();
    const userUuid = randomUUID();
    const accountId = this.store.write(() => {
      if (this.#ids.userByUsername(input.username)) throw new AppError('SERVER_USERNAME_TAKEN');
      const id = this.#accounts.insert({ uuid: accountUuid, name: input.name, settings: input.settings ?? {} }, now);
      new AccountScope(this.store, id).users.insert(
        {
          uuid: userUuid,
          username: input.username,
          passwordHash,
          role: 'admin',
          profile: { ...input.profile },
          language: input.language ?? 'en',
        },
        now,
      );
      return id;
    });
    return { accountId, accountUuid, userUuid };
  }

  usernameTaken(username: string): boolean {
    return this.#ids.userByUsername(username) !== undefined;
  }

  async hash(password: string): Promise<string> {
    return hashPassword(password, this.options.scryptCost);
  }

  async checkPassword(user: UserRow, password: string): Promise<boolean> {
    return verifyPassword(password, user.password_hash);
  }

  /**
   * Password login; returns a session token. Failed logins lock the pair (user name, client
   * address), not the user: a client guessing from one address cannot lock the account's admin
   * out of every other address. Each client address is also rate-limited across all names.
   */
  async login(username: string, password: string, client: string): Promise<{ token: string; expiresAt: number; user: UserRow }> {
    const now = this.clock.now();
    const wait = this.#limiter.attempt(client, now);
    if (wait > 0) throw new AppError('SERVER_RATE_LIMITED', undefined, { retryAfterSec: wait });
    // Known and unknown user names take the same path (lock check, one password hash check, one
    // write on failure) so that neither the answer nor its timing tells which names exist.
    const locked = this.#ids.loginFailures(username, client)?.locked_until ?? null;
    if (locked !== null && locked > now) {
      throw new AppError('SERVER_LOGIN_LOCKED', undefined, { retryAfterSec: Math.ceil((locked - now) / 1000) });
    }
    const user = this.#ids.userByUsername(username);
    this.#decoy ??= decoyHash(this.options.scryptCost);
    const ok = await verifyPassword(password, user ? user.password_hash : await this.#decoy);
    if (!user || !ok) {
      const lockUntil = now + this.options.loginLockoutSec * 1000;
      const failures = this.store.write(() =>
        this.#ids.recordLoginFailure(username, client, this.options.loginMaxFailures, lockUntil, now),
      );
      this.#onFailure?.({ username, client, accountId: user?.account_id ?? null, failures, at: now });
      throw new AppError('SERVER_UNAUTHORIZED');
    }
    const token = newToken('session');
    const expiresAt = now + this.options.sessionTtlSec * 1000;
    this.store.write(() => {
      this.#ids.clearLoginFailures(username, client);
      this.#ids.insertSession(hashToken(token), user.id, expiresAt, now);
    });
    return { token, expiresAt, user };
  }

  /** Called after each failed login (the audit log summarises them). */
  onLoginFailure(listener: (failure: LoginFailure) => void): void {
    this.#onFailure = listener;
  }

  logout(token: string): void {
    this.store.write(() => this.#ids.deleteSession(hashToken(token)));
  }

  /** When the login session of `token` ends (epoch ms), or undefined when it is not a live session. */
  sessionExpiresAt(token: string): number | undefined {
    if (tokenKind(token) !== 'session') return undefined;
    return this.#ids.sessionExpiresAt(hashToken(token), this.clock.now());
  }

  /** Resolves a bearer token to a request context, or throws SERVER_UNAUTHORIZED (no detail). */
  authenticate(authorization: string | undefined): RequestContext {
    const match = /^Bearer ([A-Za-z0-9_-]{10,200})$/.exec(authorization ?? '');
    const token = match?.[1];
    const kind = token ? tokenKind(token) : undefined;
    if (!token || !kind) throw new AppError('SERVER_UNAUTHORIZED');
    const now = this.clock.now();
    const hash = hashToken(token);
    let user: UserRow | undefined;
    if (kind === 'session') {
      user = this.#ids.sessionUser(hash, now);
    } else {
      const found = this.#ids.apiTokenUser(hash);
      if (found) {
        // Use of the API is licensed: a token only works while an API licence is active.
        if (!entitlement(new AccountLicences(this.store, found.user.account_id).all(), now).api) {
          throw new AppError('SERVER_API_LICENCE_REQUIRED');
        }
        this.#ids.touchApiToken(found.tokenId, now);
        user = found.user;
      }
    }
    if (!user) throw new AppError('SERVER_UNAUTHORIZED');
    const account = this.#accounts.byId(user.account_id);
    if (!account) throw new AppError('SERVER_UNAUTHORIZED');
    return {
      accountId: user.account_id,
      accountUuid: account.uuid,
      userId: user.id,
      userUuid: user.uuid,
      username: user.username,
      role: user.role,
      via: kind,
      scope: new AccountScope(this.store, user.account_id),
    };
  }

  /** Creates an API token for the calling user (needs an active API licence); shown once. */
  createApiToken(ctx: RequestContext, name: string): { uuid: string; name: string; token: string; createdAt: number } {
    const now = this.clock.now();
    if (!entitlement(ctx.scope.licences.all(), now).api) throw new AppError('SERVER_API_LICENCE_REQUIRED');
    const token = newToken('api');
    const uuid = randomUUID();
    const tokenHash = hashToken(token);
    ctx.scope.write(() => ctx.scope.apiTokens.insert({ uuid, userId: ctx.userId, name, tokenHash }, now));
    return { uuid, name, token, createdAt: now };
  }

  purgeExpiredSessions(): number {
    const now = this.clock.now();
    return this.store.write(() => {
      this.#ids.purgeLoginFailures(now - this.options.loginLockoutSec * 1000);
      return this.#ids.deleteExpiredSessions(now);
    });
  }
}
