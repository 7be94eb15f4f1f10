import { randomUUID } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import { AppError } from '../errors.js';
import type { GroupRow } from '../store/devices.js';
import { isConflictOn } from '../store/errors.js';
import { Device, deviceView } from './devices.js';
import { defineRoute, notFound } from './route.js';
import {
  decodeCursor,
  idPage,
  iso,
  Page,
  PageQuery,
  pageLimit,
  Timestamp,
  toPage,
  UUID_PATTERN,
  UuidParam,
} from './schemas.js';

const Group = Type.Object({
  uuid: Type.String(),
  name: Type.String(),
  description: Type.String(),
  deviceCount: Type.Integer(),
  createdAt: Timestamp,
});

function groupView(g: GroupRow) {
  return {
    uuid: g.uuid,
    name: g.name,
    description: g.description,
    deviceCount: g.device_count,
    createdAt: iso(g.created_at),
  };
}

const GroupBody = {
  name: Type.String({ minLength: 1, maxLength: 100 }),
  description: Type.Optional(Type.String({ maxLength: 1000, 'x-text': 'multiline' })),
};

function isValueCursor(v: unknown): v is { value: string; id: number } {
  return typeof v === 'object' && v !== null && typeof (v as { value: unknown }).value === 'string'
    && Number.isSafeInteger((v as { id: unknown }).id);
}

export const groupRoutes = [
  defineRoute({
    method: 'GET',
    url: '/api/inventory/device-groups',
    summary: 'Device groups',
    tags: ['inventory'],
    access: 'viewer',
    querystring: Type.Object(PageQuery, { additionalProperties: false }),
    response: Page(Group),
    handler: ({ ctx, query, services }) =>
      idPage((after, limit) => ctx.scope.groups.list({ afterId: after, limit }), query, services.config, groupView),
  }),
  defineRoute({
    method: 'POST',
    url: '/api/inventory/device-groups',
    summary: 'Create a device group',
    tags: ['inventory'],
    access: 'operator',
    activePlan: true,
    status: 201,
    body: Type.Object(GroupBody, { additionalProperties: false }),
    response: Group,
    handler: ({ ctx, body, services }) => {
      const uuid = randomUUID();
      try {
        ctx.scope.write(() =>
          ctx.scope.groups.insert({ uuid, name: body.name, description: body.description ?? '' }, services.clock.now()),
        );
      } catch (err) {
        if (isConflictOn(err, 'name')) throw new AppError('SERVER_GROUP_NAME_TAKEN');
        throw err;
      }
      return groupView(ctx.scope.groups.byUuid(uuid)!);
    },
  }),
  defineRoute({
    method: 'GET',
    url: '/api/inventory/device-groups/{uuid}',
    summary: 'One device group',
    tags: ['inventory'],
    access: 'viewer',
    params: UuidParam,
    resources: { uuid: 'group' },
    response: Group,
    handler: ({ ctx, params }) => groupView(ctx.scope.groups.byUuid(params.uuid) ?? notFound()),
  }),
  defineRoute({
    method: 'PATCH',
    url: '/api/inventory/device-groups/{uuid}',
    summary: 'Rename or describe a device group',
    tags: ['inventory'],
    access: 'operator',
    activePlan: true,
    params: UuidParam,
    resources: { uuid: 'group' },
    body: Type.Object(
      { name: Type.Optional(GroupBody.name), description: GroupBody.description },
      { additionalProperties: false },
    ),
    response: Group,
    handler: ({ ctx, params, body }) => {
      try {
        ctx.scope.write(() => {
          const g = ctx.scope.groups.byUuid(params.uuid) ?? notFound();
          ctx.scope.groups.update(g.id, body);
        });
      } catch (err) {
        if (isConflictOn(err, 'name')) throw new AppError('SERVER_GROUP_NAME_TAKEN');
        throw err;
      }
      return groupView(ctx.scope.groups.byUuid(params.uuid)!);
    },
  }),
  defineRoute({
    method: 'DELETE',
    url: '/api/inventory/device-groups/{uuid}',
    summary: 'Delete a device group (its devices stay, without group)',
    tags: ['inventory'],
    access: 'operator',
    activePlan: true,
    params: UuidParam,
    resources: { uuid: 'group' },
    status: 204,
    handler: ({ ctx, params }) => {
      ctx.scope.write(() => {
        const g = ctx.scope.groups.byUuid(params.uuid) ?? notFound();
        ctx.scope.groups.delete(g.id);
      });
    },
  }),
  defineRoute({
    method: 'GET',
    url: '/api/inventory/device-groups/{uuid}/devices',
    summary: 'Devices in a group',
    tags: ['inventory'],
    access: 'viewer',
    params: UuidParam,
    resources: { uuid: 'group' },
    querystring: Type.Object(PageQuery, { additionalProperties: false }),
    response: Page(Device),
    handler: ({ ctx, params, query, services }) => {
      const g = ctx.scope.groups.byUuid(params.uuid) ?? notFound();
      const limit = pageLimit(query, services.config);
      const after = decodeCursor(query.cursor, isValueCursor);
      const rows = ctx.scope.devices.list({
        filter: { groupId: g.id },
        sort: 'name',
        desc: false,
        ...(after ? { after } : {}),
        limit: limit + 1,
      });
      return toPage(rows, limit, deviceView, (last) => ({ value: last.name, id: last.id }));
    },
  }),
  defineRoute({
    method: 'POST',
    url: '/api/inventory/device-groups/{uuid}/devices',
    summary: 'Put devices into the group (a device is in at most one group)',
    tags: ['inventory'],
    access: 'operator',
    activePlan: true,
    params: UuidParam,
    resources: { uuid: 'group' },
    body: Type.Object(
      { deviceUuids: Type.Array(Type.String({ pattern: UUID_PATTERN }), { minItems: 1, maxItems: 1000 }) },
      { additionalProperties: false },
    ),
    response: Type.Object({ added: Type.Integer() }),
    handler: ({ ctx, params, body, services }) =>
      ctx.scope.write(() => {
        const g = ctx.scope.groups.byUuid(params.uuid) ?? notFound();
        const ids = body.deviceUuids.map((u) => {
          const d = ctx.scope.devices.byUuid(u);
          if (!d) throw new AppError('SERVER_NOT_FOUND', `Device ${u} not found.`);
          return d.id;
        });
        return { added: ctx.scope.groups.addMembers(g.id, ids, services.clock.now()) };
      }),
  }),
  defineRoute({
    method: 'DELETE',
    url: '/api/inventory/device-groups/{uuid}/devices/{deviceUuid}',
    summary: 'Take a device out of the group',
    tags: ['inventory'],
    access: 'operator',
    activePlan: true,
    params: Type.Object(
      { uuid: Type.String({ pattern: UUID_PATTERN }), deviceUuid: Type.String({ pattern: UUID_PATTERN }) },
      { additionalProperties: false },
    ),
    resources: { uuid: 'group', deviceUuid: 'device' },
    status: 204,
    handler: ({ ctx, params, services }) => {
      ctx.scope.write(() => {
        const g = ctx.scope.groups.byUuid(params.uuid) ?? notFound();
        const d = ctx.scope.devices.byUuid(params.deviceUuid) ?? notFound();
        if (!ctx.scope.groups.removeMember(g.id, d.id, services.clock.now())) notFound();
      });
    },
  }),
];
