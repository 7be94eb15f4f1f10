import { Type } from '@sinclair/typebox';
import { defineRoute } from './route.js';
import { iso } from './schemas.js';

/**
 * Dashboard data: one call per panel, each one aggregate query over indexed columns of the
 * account's devices (devices_account_effective_firmware, devices_account_effective_model,
 * devices_account_status, devices_account_geo), so they stay fast at 50,000 devices. Model,
 * firmware and position are what the router reported when it did, else what was typed in.
 */
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
    handler: ({ ctx, services }) => ({
      items: services.store
        .stmt<{ firmware: string | null; count: number }>(
          `SELECT COALESCE(reported_firmware, firmware) AS firmware, COUNT(*) AS count FROM devices WHERE account_id = ?
           GROUP BY COALESCE(reported_firmware, firmware) ORDER BY count DESC, firmware`,
        )
        .all(ctx.accountId),
    }),
  }),
  defineRoute({
    method: 'GET',
    url: '/api/dashboard/device-types',
    summary: 'Devices per model',
    tags: ['dashboard'],
    access: 'viewer',
    response: Buckets('model'),
    handler: ({ ctx, services }) => ({
      items: services.store
        .stmt<{ model: string | null; count: number }>(
          `SELECT COALESCE(reported_model, model) AS model, COUNT(*) AS count FROM devices WHERE account_id = ?
           GROUP BY COALESCE(reported_model, model) ORDER BY count DESC, model`,
        )
        .all(ctx.accountId),
    }),
  }),
  defineRoute({
    method: 'GET',
    url: '/api/dashboard/status',
    summary: 'Online (managed), unmanaged and offline device counts',
    tags: ['dashboard'],
    access: 'viewer',
    response: Type.Object({ total: Type.Integer(), online: Type.Integer(), unmanaged: Type.Integer(), offline: Type.Integer() }),
    handler: ({ ctx, services }) => {
      const r = services.store
        .stmt<{ total: number; online: number; unmanaged: number }>(
          `SELECT COUNT(*) AS total,
             COALESCE(SUM(online = 1 AND admission = 'managed'), 0) AS online,
             COALESCE(SUM(online = 1 AND admission = 'unmanaged'), 0) AS unmanaged
           FROM devices WHERE account_id = ?`,
        )
        .get(ctx.accountId)!;
      return { ...r, offline: r.total - r.online - r.unmanaged };
    },
  }),
  defineRoute({
    method: 'GET',
    url: '/api/dashboard/locations',
    summary: 'Device positions as a GeoJSON FeatureCollection (devices with latitude and longitude)',
    tags: ['dashboard'],
    access: 'viewer',
    handler: ({ ctx, services, reply }) => {
      const rows = services.store
        .stmt<{
        uuid: string;
        name: string;
        location: string;
        latitude: number;
        longitude: number;
        source: 'reported' | 'typed-in';
        online: number;
        admission: string | null;
      }>(
          `SELECT uuid, name, location,
             CASE WHEN reported_lat IS NOT NULL THEN reported_lat ELSE latitude END AS latitude,
             CASE WHEN reported_lat IS NOT NULL THEN reported_lon ELSE longitude END AS longitude,
             CASE WHEN reported_lat IS NOT NULL THEN 'reported' ELSE 'typed-in' END AS source,
             online, admission FROM devices
           WHERE account_id = ? AND ((latitude IS NOT NULL AND longitude IS NOT NULL) OR (reported_lat IS NOT NULL AND reported_lon IS NOT NULL))
           ORDER BY id`,
        )
        .all(ctx.accountId);
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
