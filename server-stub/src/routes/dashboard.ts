import { Type } from '@sinclair/typebox';
import { defineRoute } from './route.js';
import { iso } from './schemas.js';

/** Dashboard data: one call per panel, each one aggregate of the account's devices (store/dashboard.ts). */
const Buckets = (key: string) =>
  Type.Object({ items: Type.Array(Type.Object({ [key]: Type.Union([Type.String(), Type.Null()]), count: Type.Integer() })) });

export const dashboardRoutes = [
  defineRoute({
    method: 'GET',
    url: '/api/dashboard/firmware',
    summary: 'Firmware distribution: devices per firmware version',
    tags: ['dashboard'],
    access: 'viewer',
    response: Buckets('firmware'),
    handler: ({ ctx }) => ({ items: ctx.scope.dashboard.firmware() }),
  }),
  defineRoute({
    method: 'GET',
    url: '/api/dashboard/device-types',
    summary: 'Devices per model',
    tags: ['dashboard'],
    access: 'viewer',
    response: Buckets('model'),
    handler: ({ ctx }) => ({ items: ctx.scope.dashboard.models() }),
  }),
  defineRoute({
    method: 'GET',
    url: '/api/dashboard/status',
    summary: 'Online (managed), unmanaged and offline device counts',
    tags: ['dashboard'],
    access: 'viewer',
    response: Type.Object({ total: Type.Integer(), online: Type.Integer(), unmanaged: Type.Integer(), offline: Type.Integer() }),
    handler: ({ ctx }) => {
      const r = ctx.scope.dashboard.status();
      return { ...r, offline: r.total - r.online - r.unmanaged };
    },
  }),
  defineRoute({
    method: 'GET',
    url: '/api/dashboard/locations',
    summary: 'Device positions as a GeoJSON FeatureCollection (devices with latitude and longitude)',
    tags: ['dashboard'],
    access: 'viewer',
    handler: ({ ctx, reply }) => {
      const rows = ctx.scope.dashboard.locations();
      reply.type('application/geo+json');
      return {
        type: 'FeatureCollection',
        features: rows.map((r) => ({
          type: 'Feature',
          geometry: { type: 'Point', coordinates: [r.longitude, r.latitude] },
          properties: {
            uuid: r.uuid,
            name: r.name,
            location: r.location,
            positionSource: r.source,
            status:
              r.online !== 1 ? 'offline' : r.admission === 'managed' ? 'online' : r.admission === 'unmanaged' ? 'unmanaged' : 'offline',
          },
        })),
      };
    },
  }),
  defineRoute({
    method: 'GET',
    url: '/api/dashboard/events',
    summary: 'Recent account events (newest first)',
    tags: ['dashboard'],
    access: 'viewer',
    querystring: Type.Object(
      { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })) },
      { additionalProperties: false },
    ),
    handler: ({ ctx, query }) => ({
      items: ctx.scope.events.list({ limit: query.limit ?? 20 }).map((e) => ({
        type: e.type,
        subject: e.subject,
        data: e.data,
        at: iso(e.at),
      })),
    }),
  }),
];
