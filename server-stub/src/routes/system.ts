import { Type } from '@sinclair/typebox';
import { DAY, HOUR, isTestClock, MINUTE } from '../clock.js';
import { AppError } from '../errors.js';
import { defineRoute } from './route.js';
import { iso, Timestamp } from './schemas.js';

export const systemRoutes = [
  defineRoute({
    method: 'GET',
    url: '/healthz',
    summary: 'Liveness and store check; `degraded` when the data directory is full or low on space',
    tags: ['system'],
    access: 'public',
    response: Type.Object({
      status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')]),
      time: Timestamp,
      storage: Type.Object({
        status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')]),
        freeBytes: Type.Union([Type.Integer(), Type.Null()]),
        full: Type.Boolean(),
        reserve: Type.Boolean(),
      }),
    }),
    // 200 either way: the process is alive and serves reads; a restart would not free space.
    // Monitoring alerts on `status` (see docs/http-edge.md).
    handler: ({ services }) => {
      services.health.ping();
      const storage = services.storage.status();
      return { status: storage.status, time: iso(services.clock.now()), storage };
    },
  }),
  defineRoute({
    method: 'GET',
    url: '/metrics',
    summary: 'Prometheus metrics (text format)',
    tags: ['system'],
    access: 'public',
    handler: async ({ services, reply }) => {
      reply.type('text/plain; version=0.0.4; charset=utf-8');
      return services.renderMetrics();
    },
  }),
  defineRoute({
    method: 'GET',
    url: '/openapi.json',
    summary: 'This OpenAPI document',
    tags: ['system'],
    access: 'public',
    handler: ({ request }) => request.server.swagger(),
  }),
  defineRoute({
    method: 'GET',
    url: '/api/test/clock',
    summary: 'Read the server clock (test mode only)',
    tags: ['test'],
    access: 'admin',
    testOnly: true,
    response: Type.Object({ now: Timestamp }),
    handler: ({ services }) => ({ now: iso(services.clock.now()) }),
  }),
  defineRoute({
    method: 'POST',
    url: '/api/test/clock',
    summary: 'Set or advance the server clock (test mode only)',
    tags: ['test'],
    access: 'admin',
    testOnly: true,
    body: Type.Object(
      {
        set: Type.Optional(Timestamp),
        advanceMinutes: Type.Optional(Type.Integer({ minimum: 0 })),
        advanceHours: Type.Optional(Type.Integer({ minimum: 0 })),
        advanceDays: Type.Optional(Type.Integer({ minimum: 0 })),
        advanceSeconds: Type.Optional(Type.Integer({ minimum: 0 })),
      },
      { additionalProperties: false },
    ),
    response: Type.Object({ now: Timestamp }),
    handler: ({ services, body }) => {
      const clock = services.clock;
      if (!isTestClock(clock)) throw new AppError('SERVER_NOT_FOUND');
      if (body.set !== undefined) clock.set(Date.parse(body.set));
      const ms =
        (body.advanceSeconds ?? 0) * 1000
        + (body.advanceMinutes ?? 0) * MINUTE
        + (body.advanceHours ?? 0) * HOUR
        + (body.advanceDays ?? 0) * DAY;
      if (ms > 0) clock.advance(ms);
      return { now: iso(clock.now()) };
    },
  }),
];
