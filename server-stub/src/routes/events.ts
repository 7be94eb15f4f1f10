import { Type } from '@sinclair/typebox';
import type { AuditRecordRow } from '../audit/chain.js';
import { type EventLogRow, SEVERITIES } from '../store/event-log.js';
import { defineRoute } from './route.js';
import { decodeCursor, iso, Page, PageQuery, pageLimit, Timestamp, toPage, UUID_PATTERN } from './schemas.js';

/** A UUID without anchors (for patterns that repeat it). */
const UUID_RE = UUID_PATTERN.slice(1, -1);

const Severity = Type.Union(SEVERITIES.map((s) => Type.Literal(s)));

const Event = Type.Object({
  id: Type.Integer(),
  source: Type.Union([Type.Literal('device'), Type.Literal('system')]),
  type: Type.String(),
  kind: Type.String(),
  severity: Severity,
  deviceUuid: Type.Union([Type.String(), Type.Null()]),
  subject: Type.Union([Type.String(), Type.Null()]),
  data: Type.Record(Type.String(), Type.Unknown()),
  at: Timestamp,
  deviceTime: Type.Union([Type.String(), Type.Null()], { description: 'Device events: when it happened on the device.' }),
});

const AuditRecord = Type.Object({
  seq: Type.Integer({ description: 'Position in the account\'s chain (1, 2, ...).' }),
  at: Timestamp,
  actor: Type.Object({
    type: Type.Union([Type.Literal('user'), Type.Literal('system')]),
    userUuid: Type.Optional(Type.String()),
    username: Type.Optional(Type.String()),
    via: Type.Optional(Type.Union([Type.Literal('session'), Type.Literal('api')])),
  }),
  action: Type.String({ description: '`METHOD /route/{param}` or a system action.' }),
  resourceKind: Type.Union([Type.String(), Type.Null()]),
  resourceUuid: Type.Union([Type.String(), Type.Null()]),
  status: Type.Integer(),
  request: Type.Unknown({ description: 'Path parameters, query and body (secrets redacted).' }),
  before: Type.Unknown(),
  after: Type.Unknown(),
  prevHash: Type.String(),
  hash: Type.String({ description: 'SHA-256 over prevHash and this record.' }),
});

function isBefore(v: unknown): v is { before: number } {
  return typeof v === 'object' && v !== null && Number.isSafeInteger((v as { before: unknown }).before);
}

const parse = (text: string | null): unknown => (text === null ? null : JSON.parse(text));

function auditView(r: AuditRecordRow) {
  return {
    seq: r.seq,
    at: iso(r.at),
    actor: JSON.parse(r.actor) as Record<string, string>,
    action: r.action,
    resourceKind: r.resource_kind,
    resourceUuid: r.resource_uuid,
    status: r.status,
    request: parse(r.request),
    before: parse(r.before),
    after: parse(r.after),
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

const Time = (description: string) => Type.Optional(Type.String({ format: 'date-time', description }));
const ms = (t: string | undefined) => (t === undefined ? undefined : Date.parse(t));

const AuditQuery = Type.Object(
  {
    ...PageQuery,
    resourceUuid: Type.Optional(Type.String({ pattern: UUID_PATTERN })),
    userUuid: Type.Optional(Type.String({ pattern: UUID_PATTERN })),
    from: Time('Records at or after this time.'),
    to: Time('Records before this time.'),
  },
  { additionalProperties: false },
);

const auditList = (url: string, summary: string) =>
  defineRoute({
    method: 'GET',
    url,
    summary,
    tags: ['audit'],
    access: 'admin',
    feature: 'auditLog',
    querystring: AuditQuery,
    response: Page(AuditRecord),
    handler: ({ ctx, query, services }) => {
      const limit = pageLimit(query, services.config);
      const before = decodeCursor(query.cursor, isBefore)?.before ?? Number.MAX_SAFE_INTEGER;
      const from = ms(query.from);
      const to = ms(query.to);
      const rows = services.audit.repo(ctx.scope).list({
        beforeSeq: before,
        limit: limit + 1,
        filter: {
          ...(query.resourceUuid ? { resourceUuid: query.resourceUuid } : {}),
          ...(query.userUuid ? { userUuid: query.userUuid } : {}),
          ...(from === undefined ? {} : { from }),
          ...(to === undefined ? {} : { to }),
        },
      });
      return toPage(rows, limit, auditView, (last) => ({ before: last.seq }));
    },
  });

/** One entry of the activity log as the API (and the console's live stream) shows it. */
export function eventView(e: EventLogRow) {
  const data = JSON.parse(e.data) as Record<string, unknown>;
  const device = e.type === 'device.event';
  return {
    id: e.id,
    source: device ? ('device' as const) : ('system' as const),
    type: e.type,
    kind: e.kind,
    severity: e.severity,
    deviceUuid: device ? e.subject : null,
    subject: e.subject,
    data,
    at: iso(e.at),
    deviceTime: device && typeof data['at'] === 'number' ? iso(data['at']) : null,
  };
}

export const eventRoutes = [
  defineRoute({
    method: 'GET',
    url: '/api/events',
    summary:
      'Activity log: device events and system changes (licences, admission, jobs, API changes), newest first; '
      + 'filter by device, source, kind, severity and time',
    tags: ['events'],
    access: 'viewer',
    querystring: Type.Object(
      {
        ...PageQuery,
        deviceUuid: Type.Optional(Type.String({ pattern: UUID_PATTERN, description: 'Events of (or about) this device.' })),
        source: Type.Optional(Type.Union([Type.Literal('device'), Type.Literal('system')])),
        kind: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'Device event kind or system event type.' })),
        severity: Type.Optional(Severity),
        minSeverity: Type.Optional(Severity),
        from: Time('Events recorded at or after this time.'),
        to: Time('Events recorded before this time.'),
      },
      { additionalProperties: false },
    ),
    response: Page(Event),
    handler: ({ ctx, query, services }) => {
      const limit = pageLimit(query, services.config);
      const before = decodeCursor(query.cursor, isBefore)?.before ?? Number.MAX_SAFE_INTEGER;
      const from = ms(query.from);
      const to = ms(query.to);
      const rows = ctx.scope.eventLog.list({
        beforeId: before,
        limit: limit + 1,
        filter: {
          ...(query.deviceUuid ? { subject: query.deviceUuid } : {}),
          ...(query.source ? { source: query.source } : {}),
          ...(query.kind ? { kind: query.kind } : {}),
          ...(query.severity ? { severity: query.severity } : {}),
          ...(query.minSeverity ? { minSeverity: query.minSeverity } : {}),
          ...(from === undefined ? {} : { from }),
          ...(to === undefined ? {} : { to }),
        },
      });
      return toPage(
        rows,
        limit,
        eventView,
        (last) => ({ before: last.id }),
      );
    },
  }),
  defineRoute({
    method: 'GET',
    url: '/api/events/latest',
    summary: 'The newest activity-log entry of each of up to 100 devices (devices without any are left out)',
    tags: ['events'],
    access: 'viewer',
    querystring: Type.Object(
      {
        deviceUuids: Type.Optional(
          Type.String({
            pattern: `^${UUID_RE}(,${UUID_RE}){0,99}$`,
            description: 'Comma-separated device UUIDs (at most 100); without it, no device.',
          }),
        ),
      },
      { additionalProperties: false },
    ),
    response: Type.Object({ items: Type.Array(Event) }),
    handler: ({ ctx, query }) => ({
      items: ctx.scope.live.latestEvents(query.deviceUuids?.split(',') ?? []).map(eventView),
    }),
  }),
  auditList(
    '/api/audit-log',
    'Audit log (Basic and Pro): every change made through the API — who, when, what, before and after — newest first. '
    + 'Append-only; no route changes or deletes a record',
  ),
  auditList('/api/audit', 'The audit log (the same as /api/audit-log)'),
  defineRoute({
    method: 'GET',
    url: '/api/audit-log/verify',
    summary: 'Recomputes the account\'s audit hash chain: ok, or the first record that was altered or removed',
    tags: ['audit'],
    access: 'admin',
    feature: 'auditLog',
    response: Type.Object({ ok: Type.Boolean(), records: Type.Integer(), brokenAtSeq: Type.Union([Type.Integer(), Type.Null()]) }),
    handler: ({ ctx, services }) => services.audit.repo(ctx.scope).verify(),
  }),
];
