import { Type } from '@sinclair/typebox';
import { WEEKDAYS } from '../jobs/window.js';
import { JOB_LIFECYCLE } from '../jobs/job-lifecycle.js';
import type { JobDeviceRow, JobExecutionColumns } from '../store/job-executions.js';
import type { JobHead } from '../store/jobs.js';
import type { AccountScope } from '../store/scope.js';
import { defineRoute, notFound } from './route.js';
import { decodeCursor, idPage, iso, NullableTimestamp, Page, PageQuery, pageLimit, toPage, Timestamp, UUID_PATTERN, UuidParam } from './schemas.js';
import type { Services } from '../services.js';

const Uuid = Type.String({ pattern: UUID_PATTERN });
const PositiveInt = (description: string) => Type.Integer({ minimum: 1, maximum: 1_000_000, description });

const Window = Type.Union([
  Type.Object(
    {
      start: Type.String({ format: 'date-time', description: 'Window start (ISO 8601).' }),
      end: Type.String({ format: 'date-time', description: 'Window end (ISO 8601).' }),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      days: Type.Array(Type.Union(WEEKDAYS.map((d) => Type.Literal(d))), { minItems: 1, maxItems: 7 }),
      startTime: Type.String({ pattern: '^([01]\\d|2[0-3]):[0-5]\\d$', description: 'HH:MM' }),
      endTime: Type.String({ pattern: '^([01]\\d|2[0-3]):[0-5]\\d$', description: 'HH:MM (before startTime: over midnight)' }),
      timeZone: Type.Literal('UTC'),
    },
    { additionalProperties: false },
  ),
]);

const Options = Type.Object(
  {
    rollout: Type.Optional(
      Type.Object(
        {
          maxConcurrent: Type.Optional(PositiveInt('Most executions in flight at once.')),
          maxPerMinute: Type.Optional(PositiveInt('Most new executions (retries included) in any 60 s.')),
          waves: Type.Optional(
            // `minimum` rather than a numeric `exclusiveMinimum` (JSON Schema 2020-12, invalid in the
            // OpenAPI 3.0 document); options.ts rejects 0 and descending values with SERVER_VALIDATION.
            Type.Array(Type.Number({ minimum: 0, maximum: 100 }), {
              maxItems: 20,
              description: 'Cumulative percentages in (0, 100], ascending (e.g. [10, 50, 100]).',
            }),
          ),
          rebootTimeoutSec: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 86_400,
              description:
                'How long a device that disconnects while installing, rebooting or verifying keeps its licence seat (s), default 600.',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    abort: Type.Optional(
      Type.Object(
        {
          failurePercent: Type.Number({ minimum: 0, maximum: 100 }),
          minFailures: Type.Integer({ minimum: 1 }),
        },
        { additionalProperties: false, description: 'Stop new executions when failures exceed the percentage AND the count.' },
      ),
    ),
    timeoutSec: Type.Optional(Type.Integer({ minimum: 1, maximum: 30 * 86_400, description: 'Per-execution timeout (s), default 3600.' })),
    retries: Type.Optional(
      Type.Object(
        {
          max: Type.Integer({ minimum: 0, maximum: 100 }),
          delaySec: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400 })),
        },
        { additionalProperties: false },
      ),
    ),
    window: Type.Optional(Window),
    allowDowngrade: Type.Optional(Type.Boolean()),
    dynamic: Type.Optional(Type.Boolean({ description: 'Include devices that join a targeted group while the job runs.' })),
  },
  { additionalProperties: false },
);

const Job = Type.Object({
  uuid: Type.String(),
  name: Type.String(),
  state: Type.String(),
  packetUuid: Type.Union([Type.String(), Type.Null()]),
  firmwareVersion: Type.Union([Type.String(), Type.Null()]),
  templateUuid: Type.Union([Type.String(), Type.Null()]),
  target: Type.Object(
    {
      all: Type.Boolean(),
      groupUuids: Type.Array(Type.String()),
      deviceCount: Type.Integer({ description: 'How many devices the target names one by one (listed by GET /api/jobs/{uuid}/target/devices).' }),
    },
    { description: 'The target as given, without its device list (which can be 50,000 UUIDs).' },
  ),
  options: Type.Unknown(),
  system: Type.Boolean(),
  abortReason: Type.Union([Type.String(), Type.Null()]),
  createdAt: Timestamp,
  finishedAt: NullableTimestamp,
  progress: Type.Unknown({
    description: 'Counts kept as results arrive (devices by status, results, executions in flight by state), percent complete, rate.',
  }),
});

type TargetSummary = { all: boolean; groupUuids: string[]; deviceCount: number };

function jobView(services: Services, scope: AccountScope, j: JobHead) {
  const target: TargetSummary = j.target_summary === null
    ? { all: false, groupUuids: [], deviceCount: 0 }
    : (JSON.parse(j.target_summary) as TargetSummary);
  return {
    uuid: j.uuid,
    name: j.name,
    state: j.state,
    packetUuid: j.packet_id === null ? null : (services.jobs.repo(scope).packetUuid(j.id) ?? null),
    firmwareVersion: j.firmware_version,
    templateUuid: services.templates.jobTemplate(j.id)?.template_uuid ?? null,
    target: { all: target.all, groupUuids: target.groupUuids, deviceCount: target.deviceCount },
    options: JSON.parse(j.options) as unknown,
    system: j.system === 1,
    abortReason: j.abort_reason,
    createdAt: iso(j.created_at),
    finishedAt: iso(j.finished_at),
    progress: services.jobs.progressView(j),
  };
}

/**
 * A device's status in a job and its latest execution, as a job's device list and a device's job
 * history show it. `skipped`: waiting, but the device is unmanaged (beyond the licence limit), so
 * it is never dispatched to.
 */
export function executionView(r: JobExecutionColumns) {
  return {
    status: r.status === 'pending' && r.admission === 'unmanaged' ? 'skipped' : r.status,
    result: r.result,
    attempts: r.attempts,
    executionId: r.exec_uuid,
    state: r.state,
    percent: r.percent,
    errorCode: r.error_code,
    errorMessage: r.error_message,
    updatedAt: iso(r.updated_at),
  };
}

/** One row of a job's device list: the items of GET /api/jobs/{uuid}/devices and of the console's live `devices` messages. */
export function jobDeviceView(r: JobDeviceRow) {
  return {
    deviceUuid: r.device_uuid,
    serialNumber: r.serial_number,
    name: r.name,
    ...executionView(r),
    cancelRequested: r.cancel_requested === 1,
  };
}

/** The `state` filter accepts the job lifecycle's states, as its table names them. */
const JobStateQuery = Type.Union(JOB_LIFECYCLE.states.map((s) => Type.Literal(s)));

function isIdCursor(v: unknown): v is { id: number } {
  return typeof v === 'object' && v !== null && Number.isSafeInteger((v as { id: unknown }).id);
}

function isIndexCursor(v: unknown): v is { i: number } {
  return typeof v === 'object' && v !== null && Number.isSafeInteger((v as { i: unknown }).i);
}

const action = (verb: 'cancel' | 'pause' | 'resume', summary: string) =>
  defineRoute({
    method: 'POST',
    url: `/api/jobs/{uuid}/${verb}`,
    summary,
    tags: ['jobs'],
    access: 'operator',
    params: UuidParam,
    resources: { uuid: 'job' },
    response: Job,
    handler: ({ ctx, params, services }) => jobView(services, ctx.scope, services.jobs[verb](ctx.scope, params.uuid)),
  });

export const jobRoutes = [
  defineRoute({
    method: 'POST',
    url: '/api/jobs',
    summary: 'Create an update job (devices, groups or all; a packet or a vendor firmware version)',
    tags: ['jobs'],
    access: 'operator',
    activePlan: true,
    status: 201,
    // Up to 50,000 device UUIDs (about 2 MB of JSON): more than the default JSON body limit.
    bodyLimit: 4 * 1024 * 1024,
    body: Type.Object(
      {
        name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
        packetUuid: Type.Optional(Uuid),
        firmwareVersion: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
        templateUuid: Type.Optional(
          Type.String({
            pattern: UUID_PATTERN,
            description: 'A configuration template (Basic and Pro): each device gets its own rendered, signed packet.',
          }),
        ),
        target: Type.Object(
          {
            deviceUuids: Type.Optional(Type.Array(Uuid, { maxItems: 50_000 })),
            groupUuids: Type.Optional(Type.Array(Uuid, { maxItems: 1000 })),
            all: Type.Optional(Type.Boolean()),
          },
          { additionalProperties: false },
        ),
        options: Type.Optional(Options),
      },
      { additionalProperties: false },
    ),
    response: Job,
    handler: ({ ctx, body, services }) => jobView(services, ctx.scope, services.jobs.create(ctx.scope, body, ctx.userUuid)),
  }),
  defineRoute({
    method: 'GET',
    url: '/api/jobs',
    summary: 'Update jobs of the account',
    tags: ['jobs'],
    access: 'viewer',
    querystring: Type.Object({ ...PageQuery, state: Type.Optional(JobStateQuery) }, { additionalProperties: false }),
    response: Page(Job),
    handler: ({ ctx, query, services }) =>
      idPage(
        (afterId, limit) =>
          services.jobs.repo(ctx.scope).list({ afterId, limit, ...(query.state ? { state: query.state } : {}) }),
        query,
        services.config,
        (j) => jobView(services, ctx.scope, j),
      ),
  }),
  defineRoute({
    method: 'GET',
    url: '/api/jobs/{uuid}',
    summary: 'One job with its progress (counts by state, percent complete, rate); the target\'s device list is paged apart',
    tags: ['jobs'],
    access: 'viewer',
    params: UuidParam,
    resources: { uuid: 'job' },
    response: Job,
    handler: ({ ctx, params, services }) => jobView(services, ctx.scope, services.jobs.repo(ctx.scope).byUuid(params.uuid) ?? notFound()),
  }),
  defineRoute({
    method: 'GET',
    url: '/api/jobs/{uuid}/devices',
    summary: 'Per-device results of a job (cursor-paged): device name, status, result, latest execution state, error code',
    tags: ['jobs'],
    access: 'viewer',
    params: UuidParam,
    resources: { uuid: 'job' },
    querystring: Type.Object(PageQuery, { additionalProperties: false }),
    handler: ({ ctx, params, query, services }) => {
      const job = services.jobs.repo(ctx.scope).byUuid(params.uuid) ?? notFound();
      const limit = pageLimit(query, services.config);
      const after = decodeCursor(query.cursor, isIdCursor)?.id ?? 0;
      return toPage(
        services.jobs.deviceResults(job, after, limit + 1),
        limit,
        jobDeviceView,
        (last) => ({ id: last.id }),
      );
    },
  }),
  defineRoute({
    method: 'GET',
    url: '/api/jobs/{uuid}/target/devices',
    summary: 'The devices a job\'s target names one by one, in the order given (cursor-paged)',
    tags: ['jobs'],
    access: 'viewer',
    params: UuidParam,
    resources: { uuid: 'job' },
    querystring: Type.Object(PageQuery, { additionalProperties: false }),
    response: Page(Type.Object({ deviceUuid: Type.String() })),
    handler: ({ ctx, params, query, services }) => {
      const job = services.jobs.repo(ctx.scope).byUuid(params.uuid) ?? notFound();
      const limit = pageLimit(query, services.config);
      const after = decodeCursor(query.cursor, isIndexCursor)?.i ?? -1;
      return toPage(
        services.jobs.repo(ctx.scope).targetDevices(job.id, after, limit + 1),
        limit,
        (r) => ({ deviceUuid: r.uuid }),
        (last) => ({ i: last.idx }),
      );
    },
  }),
  action('cancel', 'Cancel a job: before a device\'s commit point its execution ends cancelled; after it, it finishes'),
  action('pause', 'Pause a job: no new executions; running ones continue'),
  action('resume', 'Resume a paused job'),
];
