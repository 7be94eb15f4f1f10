import { Buffer } from 'node:buffer';
import { createHash, timingSafeEqual } from 'node:crypto';
import { parseCookie, stringifySetCookie } from 'cookie';
import type { FastifyRequest } from 'fastify';
import type { AuthService, RequestContext } from '../auth/service.js';
import { AppError } from '../errors.js';

/** The console's login session travels in this cookie (the same `rfs_` token a bearer login returns). */
export const SESSION_COOKIE = 'rf_session';
/** Header that must carry the session's CSRF token on unsafe requests authenticated by the cookie. */
export const CSRF_HEADER = 'x-csrf-token';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The session token in the request's cookie, if any. */
export function sessionCookie(request: FastifyRequest): string | undefined {
  const header = request.headers.cookie;
  if (!header) return undefined;
  const value = parseCookie(header)[SESSION_COOKIE];
  return value ? value : undefined;
}

/**
 * The CSRF token of a session: derived from the session token (a hash with its own label), so it
 * needs no storage, is the same in every worker process, and cannot be computed by a page that
 * cannot read the HttpOnly cookie.
 */
export function csrfToken(sessionToken: string): string {
  return createHash('sha256').update('rf-csrf\0', 'utf8').update(sessionToken, 'utf8').digest('base64url');
}

export function csrfMatches(sessionToken: string, header: string | string[] | undefined): boolean {
  if (typeof header !== 'string') return false;
  const expected = Buffer.from(csrfToken(sessionToken));
  const given = Buffer.from(header);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export interface CookieOptions {
  /** Lifetime of the session (the cookie's Max-Age), seconds. */
  readonly maxAgeSec: number;
  /** Only sent over TLS (set when the server serves HTTPS). */
  readonly secure: boolean;
}

/** Set-Cookie value for a new session. */
export function sessionSetCookie(token: string, options: CookieOptions): string {
  return stringifySetCookie(SESSION_COOKIE, token, {
    httpOnly: true,
    sameSite: 'strict',
    path: '/',
    maxAge: options.maxAgeSec,
    secure: options.secure,
  });
}

/** Set-Cookie value that removes the session cookie. */
export function clearSessionCookie(secure: boolean): string {
  return stringifySetCookie(SESSION_COOKIE, '', { httpOnly: true, sameSite: 'strict', path: '/', maxAge: 0, secure });
}

/**
 * Authenticates an API request: the bearer token when an Authorization header is present, else the
 * session cookie. With the cookie, unsafe methods must also carry the session's CSRF token (a
 * browser sends the cookie with any request to this origin; only our own pages know the token).
 */
export function authenticateRequest(auth: AuthService, request: FastifyRequest): RequestContext {
  const authorization = request.headers.authorization;
  if (authorization !== undefined) return auth.authenticate(authorization);
  const token = sessionCookie(request);
  // Only login-session tokens are accepted from a cookie (never an API token).
  if (token === undefined || !token.startsWith('rfs_')) throw new AppError('SERVER_UNAUTHORIZED');
  const ctx = auth.authenticate(`Bearer ${token}`);
  if (!SAFE_METHODS.has(request.method) && !csrfMatches(token, request.headers[CSRF_HEADER])) {
    throw new AppError('SERVER_CSRF_TOKEN_INVALID');
  }
  return ctx;
}
