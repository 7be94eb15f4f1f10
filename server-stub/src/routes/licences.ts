import { Type } from '@sinclair/typebox';
import { LICENCE_KINDS } from '../licensing/plans.js';
import type { LicenceView } from '../licensing/service.js';
import { defineRoute, notFound } from './route.js';
import { ImportQuery, ImportReport, iso, NullableTimestamp, Timestamp, UUID_PATTERN, UuidParam } from './schemas.js';

const Licence = Type.Object({
  uuid: Type.String(),
  code: Type.String(),
  kind: Type.Union(LICENCE_KINDS.map((k) => Type.Literal(k))),
  seats: Type.Integer(),
  status: Type.Union(
    ['available', 'scheduled', 'active', 'expired', 'invalidated'].map((s) => Type.Literal(s)),
  ),
  issuedAt: Timestamp,
  redeemedAt: Timestamp,
  activationAt: NullableTimestamp,
  expiresAt: NullableTimestamp,
  stockDeadline: Timestamp,
});

const LicenceImportReport = Type.Object({
  ...ImportReport.properties,
  accepted: Type.Array(Type.Object({ line: Type.Integer(), code: Type.String(), uuid: Type.String() }), {
    description: 'The lines that redeemed their code (none when the import was refused as a whole).',
  }),
});

function licenceView(l: LicenceView) {
  return {
    uuid: l.uuid,
    code: l.code,
    kind: l.kind,
    seats: l.seats,
    status: l.status,
    issuedAt: iso(l.issuedAt),
    redeemedAt: iso(l.redeemedAt),
    activationAt: iso(l.activationAt),
    expiresAt: iso(l.expiresAt),
    stockDeadline: iso(l.stockDeadline),
  };
}

export const licenceRoutes = [
  defineRoute({
    method: 'GET',
    url: '/api/licences',
    summary: 'Licences of the account with their status',
    tags: ['licences'],
    access: 'viewer',
    response: Type.Object({ items: Type.Array(Licence) }),
    handler: ({ ctx, services }) => ({ items: services.licensing.list(ctx.scope).map(licenceView) }),
  }),
  defineRoute({
    method: 'GET',
    url: '/api/licences/{uuid}',
    summary: 'One licence',
    tags: ['licences'],
    access: 'viewer',
    params: UuidParam,
    resources: { uuid: 'licence' },
    response: Licence,
    handler: ({ ctx, params, services }) => licenceView(services.licensing.view(ctx.scope, params.uuid) ?? notFound()),
  }),
  defineRoute({
    method: 'POST',
    url: '/api/licences/redeem',
    summary: 'Redeem one activation code; the licence is then Available',
    tags: ['licences'],
    access: 'admin',
    status: 201,
    body: Type.Object({ code: Type.String({ maxLength: 64 }) }, { additionalProperties: false }),
    response: Licence,
    handler: ({ ctx, body, services }) => licenceView(services.licensing.redeem(ctx.scope, body.code)),
  }),
  defineRoute({
    method: 'POST',
    url: '/api/licences/import',
    summary: 'Bulk import of activation codes from the CSV file (a `code` column)',
    tags: ['licences'],
    access: 'admin',
    bodyType: 'csv',
    querystring: ImportQuery,
    response: LicenceImportReport,
    handler: ({ ctx, body, query, services }) =>
      services.licensing.importCsv(ctx.scope, body as Buffer, query.partial ?? false, services.config.csvMaxRows),
  }),
  defineRoute({
    method: 'POST',
    url: '/api/licences/activate',
    summary: 'Activate many licences at once (all of them or none): the listed ones, or every Available one when `licences` is omitted',
    tags: ['licences'],
    access: 'admin',
    body: Type.Object(
      {
        licences: Type.Optional(Type.Array(Type.String({ pattern: UUID_PATTERN }), { minItems: 1, maxItems: 10_000, description: 'Licence UUIDs; omitted = every Available licence.' })),
        at: Type.Optional(Timestamp),
      },
      { additionalProperties: false },
    ),
    response: Type.Object({ items: Type.Array(Licence) }),
    handler: ({ ctx, body, services }) => ({
      items: services.licensing
        .activateMany(ctx.scope, body.licences, body.at === undefined ? undefined : Date.parse(body.at))
        .map(licenceView),
    }),
  }),
  defineRoute({
    method: 'POST',
    url: '/api/licences/{uuid}/activate',
    summary: 'Activate an Available licence now, or at a chosen date (12-month term from then)',
    tags: ['licences'],
    access: 'admin',
    params: UuidParam,
    resources: { uuid: 'licence' },
    body: Type.Object({ at: Type.Optional(Timestamp) }, { additionalProperties: false }),
    response: Licence,
    handler: ({ ctx, params, body, services }) => {
      if (!services.licensing.view(ctx.scope, params.uuid)) notFound();
      return licenceView(
        services.licensing.activate(ctx.scope, params.uuid, body.at === undefined ? undefined : Date.parse(body.at)),
      );
    },
  }),
];
