import { Type } from '@sinclair/typebox';
import { AppError } from '../errors.js';
import { defineRoute } from './route.js';
import { iso, Timestamp } from './schemas.js';

export const authRoutes = [
  defineRoute({
    method: 'POST',
    url: '/api/auth/login',
    summary: 'Log in with user name and password; returns a bearer token',
    tags: ['auth'],
    access: 'public',
    body: Type.Object(
      {
        username: Type.String({ minLength: 1, maxLength: 200 }),
        password: Type.String({ minLength: 1, maxLength: 1024, 'x-text': 'password' }),
      },
      { additionalProperties: false },
    ),
    response: Type.Object({ token: Type.String(), expiresAt: Timestamp }),
    handler: async ({ body, services, request }) => {
      const { token, expiresAt, user } = await services.auth.login(body.username, body.password, request.ip);
      // A public route, so the audit hook does not see it: the login is recorded here (failed
      // logins are summarised per period by audit/logins.ts).
      try {
        services.audit.record(user.account_id, {
          at: services.clock.now(),
          actor: { type: 'user', userUuid: user.uuid, username: user.username, via: 'session' },
          action: 'POST /api/auth/login',
          resourceKind: 'login',
          resourceUuid: null,
          status: 200,
          request: { client: request.ip },
          before: null,
          after: { expiresAt: iso(expiresAt) },
        });
      } catch (err) {
        request.log.error({ err }, 'audit record failed');
      }
      return { token, expiresAt: iso(expiresAt) };
    },
  }),
  defineRoute({
    method: 'POST',
    url: '/api/auth/logout',
    summary: 'End the login session of this token',
    tags: ['auth'],
    access: 'viewer',
    status: 204,
    handler: ({ ctx, services, request }) => {
      if (ctx.via !== 'session') throw new AppError('SERVER_VALIDATION', 'API tokens are revoked, not logged out.');
      services.auth.logout((request.headers.authorization ?? '').slice('Bearer '.length));
    },
  }),
];
