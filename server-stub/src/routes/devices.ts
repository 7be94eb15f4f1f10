import { type TSchema, Type } from '@sinclair/typebox';
import { DEVICE_DEFAULTS, KEEPALIVE_LIMITS } from '../devices/service.js';
import { AppError } from '../errors.js';
import { type AdmissionFilter, DEVICE_SORTS, type DeviceRow, type DeviceSort, type DeviceStatus, type Keyset } from '../store/devices.js';
import { executionView } from './jobs.js';
import { defineRoute, notFound } from './route.js';
import {
  decodeCursor,
  ImportQuery,
  ImportReport,
  iso,
  NullableTimestamp,
  Page,
  PageQuery,
  pageLimit,
  Timestamp,
  toPage,
  UUID_PATTERN,
  UuidParam,
} from './schemas.js';

const Text = (max: number) => Type.String({ maxLength: max });
const Nullable = <T extends ReturnType<typeof Text>>(t: T) => Type.Union([t, Type.Null()]);
const Seconds = (key: keyof typeof KEEPALIVE_LIMITS, description: string) =>
  Type.Integer({
    minimum: KEEPALIVE_LIMITS[key].min,
    maximum: KEEPALIVE_LIMITS[key].max,
    description: `${description} Seconds; default ${DEVICE_DEFAULTS[key]}.` });
const CustomFields = Type.Record(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,63}$' }), Type.String({ maxLength: 1000 }), {
  maxProperties: 50,
  // A name the pattern refuses is an unknown property (TypeBox's record alone lets it through).
  additionalProperties: false,
  description: 'Custom fields (Basic and Pro plans): names are a letter, then letters, digits or _ (64 at most).',
});

const keepAlive = {
  connectionPingInterval: Type.Optional(Seconds('connectionPingInterval', 'Interval of application-level pings.')),
  connectionPongTimeout: Type.Optional(Seconds('connectionPongTimeout', 'How long to wait for a pong.')),
  connectionSessionTimeout: Type.Optional(Seconds('connectionSessionTimeout', 'Session resumption window.')),
};

const meta = {
  name: Type.Optional(Text(200)),
  location: Type.Optional(Text(200)),
  groupUuid: Type.Optional(Type.Union([Type.String({ pattern: UUID_PATTERN }), Type.Null()])),
  model: Type.Optional(Nullable(Text(100))),
  firmware: Type.Optional(Nullable(Text(100))),
  customFields: Type.Optional(CustomFields),
  latitude: Type.Optional(
    Type.Union([Type.Number({ minimum: -90, maximum: 90 }), Type.Null()], {
      description: 'WGS 84 latitude in degrees; set together with longitude; null clears both.',
    }),
  ),
  longitude: Type.Optional(
    Type.Union([Type.Number({ minimum: -180, maximum: 180 }), Type.Null()], {
      description: 'WGS 84 longitude in degrees; set together with latitude.',
    }),
  ),
  ...keepAlive,
};

export const Device = Type.Object({
  uuid: Type.String(),
  serialNumber: Type.String(),
  name: Type.String(),
  location: Type.String(),
  groupUuid: Type.Union([Type.String(), Type.Null()]),
  model: Type.Union([Type.String(), Type.Null()]),
  firmware: Type.Union([Type.String(), Type.Null()]),
  connectionPingInterval: Type.Integer(),
  connectionPongTimeout: Type.Integer(),
  connectionSessionTimeout: Type.Integer(),
  customFields: Type.Record(Type.String(), Type.String()),
  latitude: Type.Union([Type.Number(), Type.Null()]),
  longitude: Type.Union([Type.Number(), Type.Null()]),
  reported: Type.Object(
    {
      model: Type.Union([Type.String(), Type.Null()]),
      firmware: Type.Union([Type.String(), Type.Null()]),
      position: Type.Union([
        Type.Object({ latitude: Type.Number(), longitude: Type.Number(), at: Type.String() }),
        Type.Null(),
      ]),
    },
    {
      description:
        'What the router itself reported (hello and status; null until it did). The typed-in model, firmware, latitude and longitude beside it stay as entered; dashboards and Smart Updates prefer the reported values.',
    },
  ),
  status: Type.Union([Type.Literal('online'), Type.Literal('unmanaged'), Type.Literal('offline')]),
  admission: Type.Union([Type.Literal('managed'), Type.Literal('unmanaged'), Type.Literal('rejected'), Type.Null()]),
  admissionReason: Type.Union([Type.String(), Type.Null()]),
  admissionAt: NullableTimestamp,
  connectedAt: NullableTimestamp,
  lastSeenAt: NullableTimestamp,
  createdAt: Timestamp,
  updatedAt: Timestamp,
});

export function deviceStatus(d: DeviceRow): DeviceStatus {
  if (d.online !== 1) return 'offline';
  if (d.admission === 'managed') return 'online';
  if (d.admission === 'unmanaged') return 'unmanaged';
  return 'offline';
}

export function deviceView(d: DeviceRow) {
  return {
    uuid: d.uuid,
    serialNumber: d.serial_number,
    name: d.name,
    location: d.location,
    groupUuid: d.group_uuid,
    model: d.model,
    firmware: d.firmware,
    connectionPingInterval: d.ping_interval,
    connectionPongTimeout: d.pong_timeout,
    connectionSessionTimeout: d.session_timeout,
    customFields: JSON.parse(d.custom_fields) as Record<string, string>,
    latitude: d.latitude ?? null,
    longitude: d.longitude ?? null,
    reported: {
      model: d.reported_model ?? null,
      firmware: d.reported_firmware ?? null,
      position:
        d.reported_lat != null && d.reported_lon != null
          ? { latitude: d.reported_lat, longitude: d.reported_lon, at: iso(d.reported_position_at ?? 0) }
          : null,
    },
    status: deviceStatus(d),
    admission: d.admission,
    admissionReason: d.admission_reason,
    admissionAt: iso(d.admission_at),
    connectedAt: iso(d.connected_at),
    lastSeenAt: iso(d.last_seen_at),
    createdAt: iso(d.created_at),
    updatedAt: iso(d.updated_at),
  };
}

const Nullish = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

const DeviceJob = Type.Object({
  jobUuid: Type.String(),
  jobName: Type.String(),
  jobState: Type.String(),
  jobCreatedAt: Timestamp,
  status: Type.String({ description: 'pending, skipped (unmanaged, never dispatched to), active or done.' }),
  result: Nullish(Type.String()),
  attempts: Type.Integer(),
  executionId: Nullish(Type.String()),
  state: Nullish(Type.String({ description: 'State of the device\'s latest execution in the job.' })),
  percent: Nullish(Type.Number()),
  errorCode: Nullish(Type.String()),
  errorMessage: Nullish(Type.String()),
  updatedAt: NullableTimestamp,
});

function isBeforeCursor(v: unknown): v is { before: number } {
  return typeof v === 'object' && v !== null && Number.isSafeInteger((v as { before: unknown }).before);
}

const SORT_KEYS = Object.keys(DEVICE_SORTS) as DeviceSort[];

const ListQuery = Type.Object(
  {
    ...PageQuery,
    status: Type.Optional(Type.Union([Type.Literal('online'), Type.Literal('unmanaged'), Type.Literal('offline')])),
    admission: Type.Optional(
      Type.Union(['managed', 'unmanaged', 'rejected', 'none'].map((a) => Type.Literal(a)), {
        description: 'Admission state; `none`: never admitted, or its licence lease ended.',
      }),
    ),
    groupUuid: Type.Optional(Type.String({ pattern: UUID_PATTERN })),
    model: Type.Optional(Text(100)),
    firmware: Type.Optional(Text(100)),
    text: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'Part of name, serial number or location.' })),
    serialNumber: Type.Optional(Text(64)),
    sort: Type.Optional(Type.Union(SORT_KEYS.map((k) => Type.Literal(k)))),
    order: Type.Optional(Type.Union([Type.Literal('asc'), Type.Literal('desc')])),
  },
  { additionalProperties: false },
);

interface DeviceCursor extends Keyset {
  sort: DeviceSort;
  desc: boolean;
}

function isDeviceCursor(v: unknown): v is DeviceCursor {
  if (typeof v !== 'object' || v === null) return false;
  const c = v as Record<string, unknown>;
  return (
    typeof c['sort'] === 'string'
    && SORT_KEYS.includes(c['sort'] as DeviceSort)
    && typeof c['desc'] === 'boolean'
    && Number.isSafeInteger(c['id'])
    && (typeof c['value'] === 'string' || typeof c['value'] === 'number')
  );
}

/** The import report with the rows that registered a device (line, serial number, the device's uuid). */
const DeviceImportReport = Type.Object({
  ...ImportReport.properties,
  accepted: Type.Array(Type.Object({ line: Type.Integer(), serialNumber: Type.String(), uuid: Type.String() }), {
    description: 'Rows that registered a device (the first 1,000; `imported` counts all).',
  }),
});

export const deviceRoutes = [
  defineRoute({
    method: 'GET',
    url: '/api/inventory/managed-devices',
    summary: 'List devices: filters, sorting and cursor pagination',
    tags: ['inventory'],
    access: 'viewer',
    querystring: ListQuery,
    response: Page(Device),
    handler: ({ ctx, query, services }) => {
      const sort = query.sort ?? 'name';
      const desc = query.order === 'desc';
      const after = decodeCursor(query.cursor, isDeviceCursor);
      if (after && (after.sort !== sort || after.desc !== desc)) {
        throw new AppError('SERVER_INVALID_CURSOR', 'The cursor belongs to another sort order.');
      }
      let groupId: number | undefined;
      if (query.groupUuid !== undefined) {
        const g = ctx.scope.groups.byUuid(query.groupUuid);
        // Another account's group simply matches nothing.
        groupId = g ? g.id : -1;
      }
      const limit = pageLimit(query, services.config);
      const rows = ctx.scope.devices.list({
        filter: {
          ...(query.status ? { status: query.status } : {}),
          ...(query.admission ? { admission: query.admission as AdmissionFilter } : {}),
          ...(groupId !== undefined ? { groupId } : {}),
          ...(query.model !== undefined ? { model: query.model } : {}),
          ...(query.firmware !== undefined ? { firmware: query.firmware } : {}),
          ...(query.text !== undefined ? { text: query.text } : {}),
          ...(query.serialNumber !== undefined ? { serialNumber: query.serialNumber } : {}),
        },
        sort,
        desc,
        ...(after ? { after: { value: after.value, id: after.id } } : {}),
        limit: limit + 1,
      });
      return toPage(
        rows,
        limit,
        deviceView,
        (last): DeviceCursor => ({ sort, desc, value: ctx.scope.devices.sortValue(last, sort), id: last.id }),
      );
    },
  }),
  defineRoute({
    method: 'POST',
    url: '/api/inventory/managed-devices',
    summary: 'Register a device by serial number (pre-provisioning)',
    tags: ['inventory'],
    access: 'operator',
    status: 201,
    body: Type.Object(
      { serialNumber: Type.String({ minLength: 1, maxLength: 64 }), ...meta },
      { additionalProperties: false },
    ),
    response: Device,
    handler: ({ ctx, body, services }) => deviceView(services.devices.create(ctx.scope, body)),
  }),
  defineRoute({
    method: 'POST',
    url: '/api/inventory/managed-devices/import',
    summary: 'CSV mass registration (header-defined columns; all or nothing unless partial=true)',
    tags: ['inventory'],
    access: 'operator',
    bodyType: 'csv',
    querystring: ImportQuery,
    response: DeviceImportReport,
    handler: ({ ctx, body, query, services }) =>
      services.devices.importCsv(ctx.scope, body as Buffer, query.partial ?? false, services.config.csvMaxRows),
  }),
  defineRoute({
    method: 'GET',
    url: '/api/inventory/managed-devices/{uuid}',
    summary: 'One device',
    tags: ['inventory'],
    access: 'viewer',
    params: UuidParam,
    resources: { uuid: 'device' },
    response: Device,
    handler: ({ ctx, params }) => deviceView(ctx.scope.devices.byUuid(params.uuid) ?? notFound()),
  }),
  defineRoute({
    method: 'PATCH',
    url: '/api/inventory/managed-devices/{uuid}',
    summary: 'Update device metadata, keep-alive parameters and custom fields',
    tags: ['inventory'],
    access: 'operator',
    params: UuidParam,
    resources: { uuid: 'device' },
    body: Type.Object(meta, { additionalProperties: false }),
    response: Device,
    handler: ({ ctx, params, body, services }) => deviceView(services.devices.update(ctx.scope, params.uuid, body)),
  }),
  defineRoute({
    method: 'DELETE',
    url: '/api/inventory/managed-devices/{uuid}',
    summary: 'Delete a device',
    tags: ['inventory'],
    access: 'operator',
    params: UuidParam,
    resources: { uuid: 'device' },
    status: 204,
    handler: ({ ctx, params, services }) => services.devices.delete(ctx.scope, params.uuid),
  }),
  defineRoute({
    method: 'GET',
    url: '/api/inventory/managed-devices/{uuid}/jobs',
    summary: 'The device\'s job history, newest job first: its status and result in each job and its latest execution there',
    tags: ['inventory'],
    access: 'viewer',
    params: UuidParam,
    resources: { uuid: 'device' },
    querystring: Type.Object(PageQuery, { additionalProperties: false }),
    response: Page(DeviceJob),
    handler: ({ ctx, params, query, services }) => {
      const device = ctx.scope.devices.byUuid(params.uuid) ?? notFound();
      const limit = pageLimit(query, services.config);
      const before = decodeCursor(query.cursor, isBeforeCursor)?.before ?? Number.MAX_SAFE_INTEGER;
      return toPage(
        services.jobs.repo(ctx.scope).deviceHistory(device.id, before, limit + 1),
        limit,
        (r) => ({
          jobUuid: r.uuid,
          jobName: r.name,
          jobState: r.job_state,
          jobCreatedAt: iso(r.created_at),
          ...executionView(r),
        }),
        (last) => ({ before: last.id }),
      );
    },
  }),
  defineRoute({
    method: 'GET',
    url: '/api/inventory/managed-devices/{uuid}/status',
    summary: 'What the device last reported over the control channel (hello summary and status)',
    tags: ['inventory'],
    access: 'viewer',
    params: UuidParam,
    resources: { uuid: 'device' },
    response: Type.Object({
      hello: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
      helloAt: NullableTimestamp,
      status: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
      statusAt: NullableTimestamp,
    }),
    handler: ({ ctx, params }) => {
      const device = ctx.scope.devices.byUuid(params.uuid) ?? notFound();
      const row = ctx.scope.deviceStatus.byDevice(device.id);
      return {
        hello: row?.hello ? (JSON.parse(row.hello) as Record<string, unknown>) : null,
        helloAt: iso(row?.hello_at ?? null),
        status: row?.status ? (JSON.parse(row.status) as Record<string, unknown>) : null,
        statusAt: iso(row?.status_at ?? null),
      };
    },
  }),
];
