import { randomUUID } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import { AppError } from '../errors.js';
import type { UserRow } from '../store/accounts.js';
import { defineRoute, notFound } from './route.js';
import { idPage, iso, Page, PageQuery, Timestamp, UuidParam } from './schemas.js';

const Role = Type.Union([Type.Literal('admin'), Type.Literal('operator'), Type.Literal('viewer')]);
const Language = Type.Union([Type.Literal('en'), Type.Literal('de')]);
const Profile = Type.Object(
  {
    firstName: Type.Optional(Type.String({ maxLength: 100 })),
    lastName: Type.Optional(Type.String({ maxLength: 100 })),
    email: Type.Optional(Type.String({ format: 'email', maxLength: 200 })),
    phone: Type.Optional(Type.String({ maxLength: 50 })),
  },
  { additionalProperties: false },
);
const Password = Type.String({ minLength: 10, maxLength: 1024, 'x-text': 'password' });

export const User = Type.Object({
  uuid: Type.String(),
  username: Type.String(),
  role: Role,
  language: Language,
  profile: Profile,
  createdAt: Timestamp,
});

export function userView(u: UserRow) {
  return {
    uuid: u.uuid,
    username: u.username,
    role: u.role,
    language: u.language,
    profile: JSON.parse(u.profile) as Record<string, string>,
    createdAt: iso(u.created_at),
  };
}

export const userRoutes = [
  defineRoute({
    method: 'GET',
    url: '/api/me',
    summary: 'The calling user',
    tags: ['users'],
    access: 'viewer',
    response: User,
    handler: ({ ctx }) => userView(ctx.scope.users.byId(ctx.userId)!),
  }),
  defineRoute({
    method: 'PATCH',
    url: '/api/me',
    summary: 'Update own profile (contact details, language)',
    tags: ['users'],
    access: 'viewer',
    body: Type.Object(
      { profile: Type.Optional(Profile), language: Type.Optional(Language) },
      { additionalProperties: false },
    ),
    response: User,
    handler: ({ ctx, body }) => {
      ctx.scope.write(() => ctx.scope.users.update(ctx.userId, body));
      return userView(ctx.scope.users.byId(ctx.userId)!);
    },
  }),
  defineRoute({
    method: 'POST',
    url: '/api/me/password',
    summary: 'Change own password (ends other login sessions)',
    tags: ['users'],
    access: 'viewer',
    status: 204,
    body: Type.Object(
      { currentPassword: Type.String({ maxLength: 1024, 'x-text': 'password' }), newPassword: Password },
      { additionalProperties: false },
    ),
    handler: async ({ ctx, body, services }) => {
      const user = ctx.scope.users.byId(ctx.userId)!;
      if (!(await services.auth.checkPassword(user, body.currentPassword))) throw new AppError('SERVER_WRONG_PASSWORD');
      const passwordHash = await services.auth.hash(body.newPassword);
      ctx.scope.write(() => {
        ctx.scope.users.update(ctx.userId, { passwordHash });
        ctx.scope.users.endSessions(ctx.userId);
      });
    },
  }),
  defineRoute({
    method: 'GET',
    url: '/api/users',
    summary: 'Users of the account',
    tags: ['users'],
    access: 'admin',
    querystring: Type.Object(PageQuery, { additionalProperties: false }),
    response: Page(User),
    handler: ({ ctx, query, services }) =>
      idPage((after, limit) => ctx.scope.users.list({ afterId: after, limit }), query, services.config, userView),
  }),
  defineRoute({
    method: 'POST',
    url: '/api/users',
    summary: 'Add a user (plans with multiple users only)',
    tags: ['users'],
    access: 'admin',
    feature: 'multiUser',
    status: 201,
    body: Type.Object(
      {
        username: Type.String({ minLength: 3, maxLength: 100, pattern: '^[A-Za-z0-9._@-]+$' }),
        password: Password,
        role: Role,
        language: Type.Optional(Language),
        profile: Type.Optional(Profile),
      },
      { additionalProperties: false },
    ),
    response: User,
    handler: async ({ ctx, body, services }) => {
      const passwordHash = await services.auth.hash(body.password);
      const uuid = randomUUID();
      ctx.scope.write(() => {
        if (services.auth.usernameTaken(body.username)) throw new AppError('SERVER_USERNAME_TAKEN');
        ctx.scope.users.insert(
          {
            uuid,
            username: body.username,
            passwordHash,
            role: body.role,
            language: body.language ?? 'en',
            profile: body.profile ?? {},
          },
          services.clock.now(),
        );
      });
      return userView(ctx.scope.users.byUuid(uuid)!);
    },
  }),
  defineRoute({
    method: 'GET',
    url: '/api/users/{uuid}',
    summary: 'One user',
    tags: ['users'],
    access: 'admin',
    params: UuidParam,
    resources: { uuid: 'user' },
    response: User,
    handler: ({ ctx, params }) => userView(ctx.scope.users.byUuid(params.uuid) ?? notFound()),
  }),
  defineRoute({
    method: 'PATCH',
    url: '/api/users/{uuid}',
    summary: 'Change a user\'s role or profile',
    tags: ['users'],
    access: 'admin',
    params: UuidParam,
    resources: { uuid: 'user' },
    body: Type.Object(
      { role: Type.Optional(Role), language: Type.Optional(Language), profile: Type.Optional(Profile) },
      { additionalProperties: false },
    ),
    response: User,
    handler: ({ ctx, params, body }) => {
      ctx.scope.write(() => {
        const user = ctx.scope.users.byUuid(params.uuid) ?? notFound();
        if (user.role === 'admin' && body.role && body.role !== 'admin' && ctx.scope.users.adminCount() <= 1) {
          throw new AppError('SERVER_LAST_ADMIN');
        }
        ctx.scope.users.update(user.id, body);
      });
      return userView(ctx.scope.users.byUuid(params.uuid)!);
    },
  }),
  defineRoute({
    method: 'DELETE',
    url: '/api/users/{uuid}',
    summary: 'Remove a user (and their sessions and API tokens)',
    tags: ['users'],
    access: 'admin',
    params: UuidParam,
    resources: { uuid: 'user' },
    status: 204,
    handler: ({ ctx, params }) => {
      ctx.scope.write(() => {
        const user = ctx.scope.users.byUuid(params.uuid) ?? notFound();
        if (user.role === 'admin' && ctx.scope.users.adminCount() <= 1) throw new AppError('SERVER_LAST_ADMIN');
        ctx.scope.users.delete(user.id);
      });
    },
  }),
];
