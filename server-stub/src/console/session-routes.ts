import { Type } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import { defineRoute } from '../routes/route.js';
import { iso, Timestamp } from '../routes/schemas.js';
import { User, userView } from '../routes/users.js';
import type { Services } from '../services.js';
import type { UserRow } from '../store/accounts.js';
import { clearSessionCookie, csrfMatches, csrfToken, CSRF_HEADER, sessionCookie, sessionSetCookie } from './session.js';

const ConsoleSession = Type.Object({
  user: User,
  /** Send it as `x-csrf-token` with every unsafe request the cookie authenticates. */
  csrfToken: Type.String(),
  expiresAt: Timestamp,
  /** Seconds left by the server's clock (the browser's clock may differ from the server's). */
  expiresInSec: Type.Integer(),
});

function sessionView(user: UserRow, token: string, expiresAt: number, now: number) {
  return { user: userView(user), csrfToken: csrfToken(token), expiresAt: iso(expiresAt), expiresInSec: Math.max(0, Math.floor((expiresAt - now) / 1000)) };
}

/** The cookie gets `Secure` when the server speaks TLS (a browser would drop it over plain HTTP). */
function secure(services: Services, request: FastifyRequest): boolean {
  return services.config.tlsCert !== null || request.protocol === 'https';
}

function setCookie(reply: FastifyReply, value: string): void {
  reply.header('set-cookie', value);
  // The answer carries a session secret (cookie or CSRF token): never cached.
  reply.header('cache-control', 'no-store');
}

/**
 * The console's login session: a cookie (HttpOnly, SameSite=Strict) holding the same kind of
 * session token `POST /api/auth/login` returns, and a CSRF token the pages send with changes.
 */
export const consoleSessionRoutes = [
  defineRoute({
    method: 'POST',
    url: '/api/console/session',
    summary: 'Console login: sets the session cookie; returns the user and the CSRF token',
    tags: ['auth'],
    access: 'public',
    status: 201,
    body: Type.Object(
      {
        username: Type.String({ minLength: 1, maxLength: 200 }),
        password: Type.String({ minLength: 1, maxLength: 1024, 'x-text': 'password' }),
      },
      { additionalProperties: false },
    ),
    response: ConsoleSession,
    handler: async ({ body, services, request, reply }) => {
      const { token, expiresAt, user } = await services.auth.login(body.username, body.password, request.ip);
      try {
        services.audit.record(user.account_id, {
          at: services.clock.now(),
          actor: { type: 'user', userUuid: user.uuid, username: user.username, via: 'session' },
          action: 'POST /api/console/session',
          resourceKind: 'login',
          resourceUuid: null,
          status: 201,
          request: { client: request.ip },
          before: null,
          after: { expiresAt: iso(expiresAt) },
        });
      } catch (err) {
        request.log.error({ err }, 'audit record failed');
      }
      setCookie(reply, sessionSetCookie(token, { maxAgeSec: services.config.sessionTtlSec, secure: secure(services, request) }));
      return sessionView(user, token, expiresAt, services.clock.now());
    },
  }),
  defineRoute({
    method: 'GET',
    url: '/api/console/session',
    summary: 'The login session of the cookie (or of a bearer session token): user, CSRF token and end of the session',
    tags: ['auth'],
    access: 'public',
    response: ConsoleSession,
    handler: ({ services, request, reply }) => {
      const bearer = /^Bearer (\S+)$/.exec(request.headers.authorization ?? '')?.[1];
      const token = bearer ?? sessionCookie(request);
      const expiresAt = token === undefined ? undefined : services.auth.sessionExpiresAt(token);
      if (token === undefined || expiresAt === undefined) throw new AppError('SERVER_UNAUTHORIZED');
      const ctx = services.auth.authenticate(`Bearer ${token}`);
      reply.header('cache-control', 'no-store');
      return sessionView(ctx.scope.users.byId(ctx.userId)!, token, expiresAt, services.clock.now());
    },
  }),
  defineRoute({
    method: 'DELETE',
    url: '/api/console/session',
    summary: 'Console logout: ends the session of the cookie (needs the CSRF token) and removes the cookie',
    tags: ['auth'],
    access: 'public',
    status: 204,
    handler: ({ services, request, reply }) => {
      const token = sessionCookie(request);
      // A live session ends only with its CSRF token (another site must not log the user out);
      // a cookie whose session is already over is simply removed.
      if (token !== undefined && services.auth.sessionExpiresAt(token) !== undefined) {
        if (!csrfMatches(token, request.headers[CSRF_HEADER])) throw new AppError('SERVER_CSRF_TOKEN_INVALID');
        services.auth.logout(token);
      }
      setCookie(reply, clearSessionCookie(secure(services, request)));
    },
  }),
];
