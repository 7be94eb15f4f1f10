import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { IDENTIFIER_CHARS } from '@router-fleet/protocol';
import { Type } from '@sinclair/typebox';
import { AppError } from '../errors.js';
import { COMPONENT_KINDS, type StoredManifest } from '../packets/service.js';
import type { PacketRow } from '../store/packets.js';
import { defineRoute, notFound } from './route.js';
import { idPage, iso, Page, PageQuery, Timestamp, UUID_PATTERN, UuidParam } from './schemas.js';

const Signer = Type.Union([
  Type.Object({ subject: Type.String(), fingerprintSha256: Type.String(), notAfter: Type.String() }),
  Type.Null(),
]);

const Section = Type.Object({
  fileName: Type.String(),
  fileType: Type.String(),
  size: Type.Integer(),
  sha256: Type.String(),
  version: Type.Optional(Type.String()),
  requiredSw: Type.Optional(Type.String()),
  description: Type.Optional(Type.String()),
});

export const Packet = Type.Object({
  uuid: Type.String(),
  name: Type.String(),
  origin: Type.Union([Type.Literal('upload'), Type.Literal('build'), Type.Literal('vendor')]),
  sha256: Type.String(),
  size: Type.Integer(),
  signed: Type.Boolean(),
  signer: Signer,
  header: Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()]),
  sections: Type.Array(Section),
  model: Type.Union([Type.String(), Type.Null()]),
  version: Type.Union([Type.String(), Type.Null()]),
  createdAt: Timestamp,
});

export function packetView(p: PacketRow) {
  const m = JSON.parse(p.manifest) as StoredManifest;
  return {
    uuid: p.uuid,
    name: p.name,
    origin: p.origin,
    sha256: p.sha256,
    size: p.size,
    signed: p.signed === 1,
    signer: p.signer === null ? null : (JSON.parse(p.signer) as { subject: string; fingerprintSha256: string; notAfter: string }),
    header: (m.header ?? null) as Record<string, unknown> | null,
    sections: m.sections,
    model: p.model,
    version: p.version,
    createdAt: iso(p.created_at),
  };
}

const Policy = Type.Object({
  allowUnsigned: Type.Boolean({ description: 'Accept unsigned (vendor-style) packets on upload.' }),
  trustAnchors: Type.Array(Type.String({ maxLength: 16_384, 'x-text': 'document' }), {
    maxItems: 16,
    description: 'The account\'s own roots (PEM) that uploaded packets may chain to, besides the server\'s.',
  }),
});

const PEM_CERT = /^-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\s*$/;

const Component = Type.Object(
  {
    kind: Type.Union(Object.keys(COMPONENT_KINDS).map((k) => Type.Literal(k))),
    fileName: Type.String({ minLength: 1, maxLength: 255 }),
    data: Type.Optional(Type.String({ description: 'Content, base64.' })),
    text: Type.Optional(Type.String({ description: 'Content, UTF-8 text (configuration, PEM).', 'x-text': 'document' })),
    certificateUuid: Type.Optional(
      Type.String({
        pattern: UUID_PATTERN,
        description: 'certificate / ca-certificate components: a certificate of the certificate store instead of data/text.',
      }),
    ),
    version: Type.Optional(Type.String({ maxLength: 64 })),
    requiredSw: Type.Optional(Type.String({ maxLength: 200 })),
    description: Type.Optional(Type.String({ maxLength: 256, 'x-text': 'multiline' })),
  },
  { additionalProperties: false },
);

/** Largest byte range request header we parse (anything longer is refused with 416). */
const MAX_RANGE_HEADER = 256;

type RangeAnswer = { kind: 'full' } | { kind: 'partial'; start: number; end: number } | { kind: 'unsatisfiable' };

/**
 * Interprets `Range` for a file of `size` bytes. One `bytes=` range is served as 206; several
 * ranges are answered with the whole file (200, allowed by RFC 9110: a server may ignore Range);
 * a malformed or unsatisfiable range is 416. `If-Range` that does not match the ETag means "send
 * it all".
 */
export function interpretRange(range: string | undefined, ifRange: string | undefined, etag: string, size: number): RangeAnswer {
  if (range === undefined) return { kind: 'full' };
  if (ifRange !== undefined && ifRange.trim() !== etag) return { kind: 'full' };
  if (range.length > MAX_RANGE_HEADER) return { kind: 'unsatisfiable' };
  const m = /^\s*bytes\s*=\s*(.+)$/i.exec(range);
  if (!m) return { kind: 'unsatisfiable' };
  const specs = m[1]!.split(',').map((x) => x.trim()).filter((x) => x.length > 0);
  if (specs.length === 0) return { kind: 'unsatisfiable' };
  if (specs.length > 1) return { kind: 'full' };
  const r = /^(\d*)-(\d*)$/.exec(specs[0]!);
  if (!r || (r[1] === '' && r[2] === '')) return { kind: 'unsatisfiable' };
  if (r[1] === '') {
    const suffix = Number(r[2]);
    if (!Number.isSafeInteger(suffix) || suffix === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'partial', start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(r[1]);
  const end = r[2] === '' ? size - 1 : Math.min(Number(r[2]), size - 1);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start >= size || end < start) {
    return { kind: 'unsatisfiable' };
  }
  return { kind: 'partial', start, end };
}

export const packetRoutes = [
  defineRoute({
    method: 'GET',
    url: '/api/packets',
    summary: 'Update packets of the account (uploaded or built)',
    tags: ['packets'],
    access: 'viewer',
    activePlan: true,
    querystring: Type.Object(PageQuery, { additionalProperties: false }),
    response: Page(Packet),
    handler: ({ ctx, query, services }) =>
      idPage((afterId, limit) => services.packets.repo(ctx.scope).list({ afterId, limit }), query, services.config, packetView),
  }),
  defineRoute({
    method: 'POST',
    url: '/api/packets',
    summary: 'Upload an update packet (application/x-tar, streamed to disk, verified: signature policy, MANIFEST, hashes)',
    tags: ['packets'],
    access: 'operator',
    activePlan: true,
    querystring: Type.Object(
      { name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })) },
      { additionalProperties: false },
    ),
    status: 201,
    response: Packet,
    handler: async ({ ctx, query, services, request }) => {
      const body = request.body as Readable | undefined;
      if (!body || typeof (body as Readable).pipe !== 'function') {
        throw new AppError('SERVER_UNSUPPORTED_MEDIA_TYPE', 'Upload the packet as the raw body, Content-Type: application/x-tar.');
      }
      return packetView(await services.packets.upload(ctx.scope, body, query.name));
    },
  }),
  defineRoute({
    method: 'POST',
    url: '/api/packets/build',
    summary: 'Build a packet from components, signed with the server\'s signing key',
    tags: ['packets'],
    access: 'operator',
    activePlan: true,
    bodyLimit: 64 * 1024 * 1024,
    body: Type.Object(
      {
        name: Type.String({ minLength: 1, maxLength: 200 }),
        description: Type.Optional(Type.String({ maxLength: 256, 'x-text': 'multiline' })),
        targetModels: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64, pattern: '^[^,\\r\\n]+$' }), { maxItems: 64 })),
        components: Type.Array(Component, { minItems: 1, maxItems: 32 }),
      },
      { additionalProperties: false },
    ),
    status: 201,
    response: Packet,
    handler: async ({ ctx, body, services }) =>
      packetView(
        await services.packets.build(ctx.scope, {
          ...body,
          components: services.certificates.resolveComponents(ctx.scope, body.components as never),
        } as never),
      ),
  }),
  defineRoute({
    method: 'GET',
    url: '/api/packets/policy',
    summary: 'The account\'s packet signature policy',
    tags: ['packets'],
    access: 'viewer',
    response: Policy,
    handler: ({ ctx, services }) => services.packets.repo(ctx.scope).policy(),
  }),
  defineRoute({
    method: 'PUT',
    url: '/api/packets/policy',
    summary: 'Set the packet signature policy (unsigned uploads allowed; the account\'s own trust anchors)',
    tags: ['packets'],
    access: 'admin',
    body: Type.Object(
      { allowUnsigned: Type.Boolean(), trustAnchors: Type.Optional(Policy.properties.trustAnchors) },
      { additionalProperties: false },
    ),
    response: Policy,
    handler: ({ ctx, body, services }) => {
      for (const pem of body.trustAnchors ?? []) {
        if (!PEM_CERT.test(pem)) throw new AppError('SERVER_VALIDATION', 'trustAnchors must be PEM certificates.');
      }
      services.trust.checkAccountAnchors(body.trustAnchors ?? []);
      const repo = services.packets.repo(ctx.scope);
      const before = repo.policy().trustAnchors;
      ctx.scope.write(() => repo.setPolicy({ allowUnsigned: body.allowUnsigned, trustAnchors: body.trustAnchors ?? [] }));
      const after = repo.policy();
      // Routers must trust the account's roots before they are sent packets signed under them.
      if (JSON.stringify(before) !== JSON.stringify(after.trustAnchors)) services.trust.accountChanged(ctx.scope.accountId);
      return after;
    },
  }),
  defineRoute({
    method: 'GET',
    url: '/api/packets/{uuid}',
    summary: 'Inspect a packet: manifest header, sections (processing order), signer',
    tags: ['packets'],
    access: 'viewer',
    params: UuidParam,
    resources: { uuid: 'packet' },
    response: Packet,
    handler: ({ ctx, params, services }) => packetView(services.packets.repo(ctx.scope).byUuid(params.uuid) ?? notFound()),
  }),
  defineRoute({
    method: 'GET',
    url: '/api/packets/{uuid}/manifest',
    summary: 'The packet\'s MANIFEST as it is in the packet (the exact text the signature covers)',
    tags: ['packets'],
    access: 'viewer',
    params: UuidParam,
    resources: { uuid: 'packet' },
    response: Type.Object({ text: Type.String({ description: 'The MANIFEST, UTF-8 (`KEY=value` lines; sections start at FILENAME=).' }) }),
    handler: async ({ ctx, params, services }) => ({ text: await services.packets.manifestText(ctx.scope, params.uuid) }),
  }),
  defineRoute({
    method: 'DELETE',
    url: '/api/packets/{uuid}',
    summary: 'Delete a packet (refused with SERVER_PACKET_IN_USE while an active job uses it)',
    tags: ['packets'],
    access: 'operator',
    params: UuidParam,
    resources: { uuid: 'packet' },
    status: 204,
    freesSpace: true,
    handler: async ({ ctx, params, services }) => services.packets.delete(ctx.scope, params.uuid),
  }),
  defineRoute({
    method: 'GET',
    url: '/api/firmware',
    summary: 'The vendor firmware catalogue (every account): signed firmware per model and version',
    tags: ['packets'],
    access: 'viewer',
    querystring: Type.Object(
      { ...PageQuery, model: Type.Optional(Type.String({ maxLength: 64 })) },
      { additionalProperties: false },
    ),
    response: Page(Packet),
    handler: ({ query, services }) =>
      idPage(
        (afterId, limit) =>
          services.packets.catalogue.list({ afterId, limit, ...(query.model ? { model: query.model } : {}) }),
        query,
        services.config,
        packetView,
      ),
  }),
  defineRoute({
    method: 'GET',
    url: '/api/packets/download/{executionId}',
    summary:
      'Packet download for a device (Authorization: Bearer <download token of the job offer>); Range, If-Range, ETag',
    tags: ['packets'],
    access: 'public',
    params: Type.Object(
      { executionId: Type.String({ minLength: 1, maxLength: 64, pattern: `^[${IDENTIFIER_CHARS}]+$` }) },
      { additionalProperties: false },
    ),
    resources: { executionId: 'execution' },
    handler: async ({ params, services, request, reply }) => {
      const auth = request.headers.authorization;
      const token = auth?.startsWith('Bearer ') ? auth.slice(7).trim() : undefined;
      if (!token) throw new AppError('SERVER_UNAUTHORIZED');
      const now = services.clock.now();
      const check = services.jobs.tokens.check(token, now);
      if (!check.ok) {
        throw new AppError(check.reason === 'expired' ? 'SERVER_DOWNLOAD_EXPIRED' : 'SERVER_DOWNLOAD_FORBIDDEN');
      }
      const target = services.jobs.downloadTarget(params.executionId);
      if (check.claims.executionId !== params.executionId || !target || target.deviceUuid !== check.claims.deviceUuid) {
        throw new AppError('SERVER_DOWNLOAD_FORBIDDEN');
      }
      const { packet } = target;
      const etag = `"${packet.sha256}"`;
      const headers: Record<string, string | number> = {
        'accept-ranges': 'bytes',
        etag,
        'content-type': 'application/x-tar',
        'cache-control': 'private, no-transform',
      };
      const range = interpretRange(
        request.headers.range,
        request.headers['if-range'] as string | undefined,
        etag,
        packet.size,
      );
      if (range.kind === 'unsatisfiable') {
        reply.header('content-range', `bytes */${packet.size}`);
        throw new AppError('SERVER_RANGE_NOT_SATISFIABLE');
      }
      const start = range.kind === 'partial' ? range.start : 0;
      const end = range.kind === 'partial' ? range.end : packet.size - 1;
      const status = range.kind === 'partial' ? 206 : 200;
      if (range.kind === 'partial') headers['content-range'] = `bytes ${start}-${end}/${packet.size}`;
      headers['content-length'] = end - start + 1;
      // Streamed from disk (a read stream per request, nothing buffered beyond its chunks); the
      // reply is hijacked so the status and headers are exactly these.
      // A free slot, or a place in the queue for one; otherwise come back later.
      const gone = new AbortController();
      const onClose = () => gone.abort();
      reply.raw.once('close', onClose);
      const slot = services.packets.downloads.acquire(gone.signal);
      const granted = slot === true || (slot !== false && (await slot));
      reply.raw.off('close', onClose);
      if (!granted) {
        throw new AppError('SERVER_DOWNLOADS_BUSY', undefined, { retryAfterSec: services.packets.options.downloadRetryAfterSec });
      }
      let path: string;
      try {
        path = await services.packets.storage.local(packet.sha256);
      } catch (err) {
        services.packets.downloads.release();
        throw err;
      }
      const file = createReadStream(path, { start, end });
      reply.hijack();
      const res = reply.raw;
      res.writeHead(status, headers);
      try {
        if (request.method === 'HEAD') res.end();
        else await pipeline(file, res);
      } catch {
        res.destroy();
      } finally {
        file.destroy();
        services.packets.downloads.release();
      }
      return reply;
    },
  }),
];
