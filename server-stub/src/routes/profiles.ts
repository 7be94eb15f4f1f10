import { Readable } from 'node:stream';
import { Type } from '@sinclair/typebox';
import { AppError } from '../errors.js';
import { defineRoute } from './route.js';
import { UUID_PATTERN, UuidParam } from './schemas.js';

const Format = Type.Union([Type.Literal('update-packet'), Type.Literal('json')], {
  description: '`update-packet` (default): a signed packet with one FILETYPE=ConnectionProfile section; `json`: the profile itself.',
});

/** Most devices named in one bulk request (all devices of an account: `all: true`). */
export const BULK_PROFILE_MAX_UUIDS = 50_000;

export const profileRoutes = [
  defineRoute({
    method: 'GET',
    url: '/api/inventory/managed-devices/{uuid}/connection-profile',
    summary: 'The device\'s connection profile (holds the device credential): signed update packet or JSON',
    tags: ['inventory', 'provisioning'],
    access: 'operator',
    params: UuidParam,
    resources: { uuid: 'device' },
    // The profile carries the device credential: every download is in the audit log.
    auditRead: true,
    querystring: Type.Object({ format: Type.Optional(Format) }, { additionalProperties: false }),
    handler: async ({ ctx, params, query, services, reply }) => {
      const profile = services.profiles.profile(ctx.scope, params.uuid);
      reply.header('cache-control', 'no-store');
      if (query.format === 'json') return profile;
      const packet = await services.profiles.packet(profile);
      reply
        .type('application/x-tar')
        .header('content-disposition', `attachment; filename="connection-profile-${profile.serialNumber}.tar"`);
      return packet;
    },
  }),
  defineRoute({
    method: 'POST',
    url: '/api/inventory/connection-profiles',
    summary: 'Connection profiles of many devices, streamed as NDJSON (one device per line)',
    tags: ['inventory', 'provisioning'],
    access: 'operator',
    body: Type.Object(
      {
        deviceUuids: Type.Optional(
          Type.Array(Type.String({ pattern: UUID_PATTERN }), { minItems: 1, maxItems: BULK_PROFILE_MAX_UUIDS }),
        ),
        all: Type.Optional(Type.Boolean({ description: 'Every device of the account (instead of deviceUuids).' })),
        format: Type.Optional(
          Type.Union([Type.Literal('json'), Type.Literal('update-packet')], {
            description: '`json` (default, fast: no signing): one profile per line; `update-packet`: `{deviceId, serialNumber, packet}` with the signed packet in base64.',
          }),
        ),
      },
      { additionalProperties: false },
    ),
    handler: ({ ctx, body, services, reply }) => {
      if ((body.all === true) === (body.deviceUuids !== undefined)) {
        throw new AppError('SERVER_VALIDATION', 'Give either deviceUuids or "all": true.');
      }
      const lines = services.profiles.bulk(
        ctx.scope,
        body.deviceUuids ? { deviceUuids: body.deviceUuids } : {},
        body.format ?? 'json',
      );
      reply.type('application/x-ndjson').header('cache-control', 'no-store');
      return Readable.from(lines, { objectMode: false });
    },
  }),
];
