import { Type } from '@sinclair/typebox';
import { EXPIRING_DAYS_DEFAULT } from '../certificates/service.js';
import type { Services } from '../services.js';
import type { StoredCertificateRow } from '../store/certificates.js';
import { defineRoute, notFound } from './route.js';
import { idPage, iso, NullableTimestamp, Page, PageQuery, pageLimit, Timestamp, UuidParam } from './schemas.js';

/** The certificate store (Basic and Pro): certificates and CA certificates, never private keys. */
const Certificate = Type.Object({
  uuid: Type.String(),
  name: Type.String(),
  kind: Type.Union([Type.Literal('certificate'), Type.Literal('ca')]),
  subject: Type.String(),
  issuer: Type.String(),
  serialNumber: Type.String(),
  notBefore: NullableTimestamp,
  notAfter: NullableTimestamp,
  fingerprintSha256: Type.String({ description: 'SHA-256 of the DER, hex.' }),
  isCa: Type.Boolean(),
  selfSigned: Type.Boolean(),
  status: Type.Union([Type.Literal('valid'), Type.Literal('expiring'), Type.Literal('expired'), Type.Literal('not-yet-valid')]),
  pem: Type.String(),
  createdAt: Timestamp,
});

function certificateView(services: Services, c: StoredCertificateRow) {
  return {
    uuid: c.uuid,
    name: c.name,
    kind: c.kind,
    subject: c.subject ?? '',
    issuer: c.issuer ?? '',
    serialNumber: c.serial ?? '',
    notBefore: iso(c.not_before),
    notAfter: iso(c.not_after),
    fingerprintSha256: c.fingerprint_sha256 ?? '',
    isCa: c.kind === 'ca',
    selfSigned: c.self_signed === 1,
    status: services.certificates.status(c),
    pem: c.pem,
    createdAt: iso(c.created_at),
  };
}

const common = { tags: ['certificates'], feature: 'certificateStore' } as const;

export const certificateRoutes = [
  defineRoute({
    ...common,
    method: 'GET',
    url: '/api/certificates',
    summary: 'Certificate store (Basic and Pro): certificates and CA certificates',
    access: 'viewer',
    querystring: Type.Object(
      { ...PageQuery, kind: Type.Optional(Type.Union([Type.Literal('certificate'), Type.Literal('ca')])) },
      { additionalProperties: false },
    ),
    response: Page(Certificate),
    handler: ({ ctx, query, services }) =>
      idPage(
        (afterId, limit) =>
          services.certificates.repo(ctx.scope).list({ afterId, limit, ...(query.kind ? { kind: query.kind } : {}) }),
        query,
        services.config,
        (c) => certificateView(services, c),
      ),
  }),
  defineRoute({
    ...common,
    method: 'POST',
    url: '/api/certificates',
    summary:
      'Upload a certificate or CA certificate: PEM text or DER (base64). Private keys are refused '
      + '(SERVER_CERTIFICATE_PRIVATE_KEY), anything else that is not one X.509 certificate too (SERVER_CERTIFICATE_INVALID)',
    access: 'operator',
    status: 201,
    body: Type.Object(
      {
        name: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'Default: the subject CN.' })),
        pem: Type.Optional(Type.String({ maxLength: 65_536, 'x-text': 'document' })),
        der: Type.Optional(Type.String({ maxLength: 65_536, description: 'DER, base64.' })),
        kind: Type.Optional(
          Type.Union([Type.Literal('certificate'), Type.Literal('ca')], {
            description: 'Derived from basicConstraints; `ca` additionally refuses a certificate that is not a CA.',
          }),
        ),
      },
      { additionalProperties: false },
    ),
    response: Certificate,
    handler: ({ ctx, body, services }) => certificateView(services, services.certificates.upload(ctx.scope, body)),
  }),
  defineRoute({
    ...common,
    method: 'GET',
    url: '/api/certificates/expiring-soon',
    summary: 'Certificates that expire within `days` (default 30), expired ones included, soonest first',
    access: 'viewer',
    querystring: Type.Object(
      {
        days: Type.Optional(Type.Integer({ minimum: 0, maximum: 3650, description: `Days ahead; default ${EXPIRING_DAYS_DEFAULT}.` })),
        limit: PageQuery.limit,
      },
      { additionalProperties: false },
    ),
    response: Type.Object({ items: Type.Array(Certificate) }),
    handler: ({ ctx, query, services }) => ({
      items: services.certificates
        .expiringSoon(ctx.scope, query.days ?? EXPIRING_DAYS_DEFAULT, pageLimit(query, services.config))
        .map((c) => certificateView(services, c)),
    }),
  }),
  defineRoute({
    ...common,
    method: 'GET',
    url: '/api/certificates/{uuid}',
    summary: 'One stored certificate',
    access: 'viewer',
    params: UuidParam,
    resources: { uuid: 'certificate' },
    response: Certificate,
    handler: ({ ctx, params, services }) =>
      certificateView(services, services.certificates.repo(ctx.scope).byUuid(params.uuid) ?? notFound()),
  }),
  defineRoute({
    ...common,
    method: 'DELETE',
    url: '/api/certificates/{uuid}',
    summary: 'Delete a stored certificate (packets built from it keep their copy)',
    access: 'operator',
    params: UuidParam,
    resources: { uuid: 'certificate' },
    status: 204,
    handler: ({ ctx, params, services }) => services.certificates.delete(ctx.scope, params.uuid),
  }),
];
