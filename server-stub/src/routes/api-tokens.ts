import { Type } from '@sinclair/typebox';
import type { ApiTokenRow } from '../store/accounts.js';
import { defineRoute, notFound } from './route.js';
import { idPage, iso, NullableTimestamp, Page, PageQuery, Timestamp, UuidParam } from './schemas.js';

const ApiToken = Type.Object({
  uuid: Type.String(),
  name: Type.String(),
  createdAt: Timestamp,
  lastUsedAt: NullableTimestamp,
  revokedAt: NullableTimestamp,
});

function tokenView(t: ApiTokenRow) {
  return {
    uuid: t.uuid,
    name: t.name,
    createdAt: iso(t.created_at),
    lastUsedAt: iso(t.last_used_at),
    revokedAt: iso(t.revoked_at),
  };
}

export const apiTokenRoutes = [
  defineRoute({
    method: 'GET',
    url: '/api/api-tokens',
    summary: 'API tokens of the account (never the tokens themselves)',
    tags: ['auth'],
    access: 'admin',
    querystring: Type.Object(PageQuery, { additionalProperties: false }),
    response: Page(ApiToken),
    handler: ({ ctx, query, services }) =>
      idPage((after, limit) => ctx.scope.apiTokens.list({ afterId: after, limit }), query, services.config, tokenView),
  }),
  defineRoute({
    method: 'POST',
    url: '/api/api-tokens',
    summary: 'Create an API token (needs an active API licence); the token is shown only in this answer',
    tags: ['auth'],
    access: 'admin',
    status: 201,
    body: Type.Object({ name: Type.String({ minLength: 1, maxLength: 100 }) }, { additionalProperties: false }),
    response: Type.Object({ uuid: Type.String(), name: Type.String(), token: Type.String(), createdAt: Timestamp }),
    handler: ({ ctx, body, services }) => {
      const t = services.auth.createApiToken(ctx, body.name);
      return { ...t, createdAt: iso(t.createdAt) };
    },
  }),
  defineRoute({
    method: 'DELETE',
    url: '/api/api-tokens/{uuid}',
    summary: 'Revoke an API token',
    tags: ['auth'],
    access: 'admin',
    params: UuidParam,
    resources: { uuid: 'apiToken' },
    status: 204,
    handler: ({ ctx, params, services }) => {
      ctx.scope.write(() => {
        const t = ctx.scope.apiTokens.byUuid(params.uuid) ?? notFound();
        ctx.scope.apiTokens.revoke(t.id, services.clock.now());
      });
    },
  }),
];
