import { Type } from '@sinclair/typebox';
import { defineRoute } from './route.js';
import { iso, NullableTimestamp } from './schemas.js';

const Consent = Type.Object({
  consent: Type.Union([Type.Boolean(), Type.Null()], { description: 'null: the account has not decided yet.' }),
  decidedAt: NullableTimestamp,
  askRequired: Type.Boolean({ description: 'A plan licence is active and the account has not decided: ask now.' }),
  collected: Type.Array(Type.String(), { description: 'What is collected (the published list); nothing else is kept.' }),
});

const COLLECTED = [
  'operating hours',
  'disconnections',
  'network quality',
  'firmware version',
  'device restarts',
  'processor load and memory usage',
  'data throughput',
  'function usage/activation',
];

const Aggregate = Type.Object({
  model: Type.Union([Type.String(), Type.Null()]),
  firmware: Type.Union([Type.String(), Type.Null()]),
  devices: Type.Integer(),
  samples: Type.Integer(),
  sampledHours: Type.Union([Type.Number(), Type.Null()]),
  operatingHoursAvg: Type.Union([Type.Number(), Type.Null()]),
  disconnections: Type.Number(),
  disconnectionsPerDay: Type.Union([Type.Number(), Type.Null()]),
  restarts: Type.Number(),
  restartsPerDay: Type.Union([Type.Number(), Type.Null()]),
  cpuLoadPercentAvg: Type.Union([Type.Number(), Type.Null()]),
  memoryUsagePercentAvg: Type.Union([Type.Number(), Type.Null()]),
  networkQualityAvg: Type.Union([Type.Number(), Type.Null()]),
  throughputBytesIn: Type.Number(),
  throughputBytesOut: Type.Number(),
  throughputBytesPerSecond: Type.Union([Type.Number(), Type.Null()]),
});

const SmartUpdates = Type.Object({ enabled: Type.Boolean(), changedAt: NullableTimestamp });

export const analyticsRoutes = [
  defineRoute({
    method: 'GET',
    url: '/api/account/analytics-consent',
    summary: 'icom OS device analytics: the account\'s consent (one decision for all its devices)',
    tags: ['analytics'],
    access: 'viewer',
    response: Consent,
    handler: ({ ctx, services }) => {
      const c = services.analytics.consent(ctx.scope);
      return { ...c, decidedAt: iso(c.decidedAt), collected: COLLECTED };
    },
  }),
  defineRoute({
    method: 'PUT',
    url: '/api/account/analytics-consent',
    summary: 'Give or withdraw consent; connected devices are told at once (a `settings` message)',
    tags: ['analytics'],
    access: 'admin',
    body: Type.Object({ consent: Type.Boolean() }, { additionalProperties: false }),
    response: Consent,
    handler: ({ ctx, body, services }) => {
      const c = services.analytics.setConsent(ctx.scope, body.consent);
      return { ...c, decidedAt: iso(c.decidedAt), collected: COLLECTED };
    },
  }),
  defineRoute({
    method: 'GET',
    url: '/api/analytics/aggregates',
    summary: 'Device analytics per model and firmware (operating hours, disconnections, restarts, load, throughput, network quality)',
    tags: ['analytics'],
    access: 'viewer',
    querystring: Type.Object(
      {
        from: Type.Optional(Type.String({ format: 'date-time', description: 'Samples whose period ended at or after.' })),
        to: Type.Optional(Type.String({ format: 'date-time', description: 'Samples whose period ended before.' })),
        model: Type.Optional(Type.String({ maxLength: 100 })),
      },
      { additionalProperties: false },
    ),
    response: Type.Object({ items: Type.Array(Aggregate) }),
    handler: ({ ctx, query, services }) => ({
      items: services.analytics.aggregates(ctx.scope, {
        ...(query.from ? { from: Date.parse(query.from) } : {}),
        ...(query.to ? { to: Date.parse(query.to) } : {}),
        ...(query.model ? { model: query.model } : {}),
      }),
    }),
  }),
  defineRoute({
    method: 'GET',
    url: '/api/account/smart-updates',
    summary: 'Smart Updates: whether devices are kept on the newest compatible vendor firmware automatically',
    tags: ['jobs'],
    access: 'viewer',
    response: SmartUpdates,
    handler: ({ ctx, services }) => {
      const s = services.smartUpdates.setting(ctx.scope);
      return { enabled: s.enabled, changedAt: iso(s.changedAt) };
    },
  }),
  defineRoute({
    method: 'PUT',
    url: '/api/account/smart-updates',
    summary: 'Switch Smart Updates on or off (on: system jobs per model and version, with the usual rollout limits)',
    tags: ['jobs'],
    access: 'admin',
    body: Type.Object({ enabled: Type.Boolean() }, { additionalProperties: false }),
    response: SmartUpdates,
    handler: ({ ctx, body, services }) => {
      const s = services.smartUpdates.set(ctx.scope, body.enabled);
      return { enabled: s.enabled, changedAt: iso(s.changedAt) };
    },
  }),
];
