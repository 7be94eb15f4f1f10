import { Buffer } from 'node:buffer';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { RouteSpec } from '../routes/route.js';
import type { Services } from '../services.js';
import { MAX_AUDIT_JSON, resourceSnapshot, singletonOf } from './snapshots.js';

const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

interface Pending {
  spec: RouteSpec | undefined;
  before: unknown;
}

/**
 * Records one audit record for every call of a mutating route by an authenticated caller: who
 * (user, session or API token), when, what (method, route, path parameters, redacted body), the
 * status, and the resource's state before and after. Driven by the route table (each route's
 * `resources` name what to snapshot), so no route records anything itself. Written in `onSend`,
 * before the answer leaves: no change is acknowledged without its record.
 */
export function installAudit(app: FastifyInstance, services: Services, routes: readonly RouteSpec[]): void {
  const byRoute = new Map<string, RouteSpec>();
  for (const r of routes) byRoute.set(`${r.method} ${r.url.replace(/\{(\w+)\}/g, ':$1')}`, r);
  const pending = new WeakMap<FastifyRequest, Pending>();
  const { store } = services;

  const snapshot = (request: FastifyRequest, spec: RouteSpec | undefined): unknown => {
    const ctx = request.fleetCtx!;
    if (!spec) return null;
    const key = `${spec.method} ${spec.url}`;
    const single = singletonOf(key);
    if (single) return single.read(store, ctx.accountId, ctx.userId);
    const entries = Object.entries(spec.resources ?? {});
    if (entries.length === 0) return null;
    const params = (request.params ?? {}) as Record<string, string>;
    const snaps = entries.map(([param, kind]) => {
      const uuid = params[param];
      return [param, uuid ? resourceSnapshot(store, ctx.accountId, kind, uuid) : null] as const;
    });
    return snaps.length === 1 ? snaps[0]![1] : Object.fromEntries(snaps);
  };

  const skip = (request: FastifyRequest): boolean =>
    !request.fleetCtx
    || (READ_METHODS.has(request.method) && byRoute.get(`${request.method} ${request.routeOptions.url ?? ''}`)?.auditRead !== true);

  app.addHook('preHandler', async (request) => {
    if (skip(request)) return;
    const spec = byRoute.get(`${request.method} ${request.routeOptions.url ?? ''}`);
    try {
      pending.set(request, { spec, before: snapshot(request, spec) });
    } catch (err) {
      request.log.warn({ err }, 'audit snapshot failed');
    }
  });

  app.addHook('onSend', async (request, reply, payload) => {
    const ctx = request.fleetCtx;
    if (!ctx || skip(request)) return payload;
    const spec = pending.get(request)?.spec ?? byRoute.get(`${request.method} ${request.routeOptions.url ?? ''}`);
    const status = reply.statusCode;
    try {
      const params = (request.params ?? {}) as Record<string, string>;
      const resources = Object.entries(spec?.resources ?? {});
      const [firstParam, firstKind] = resources[0] ?? [];
      let resourceKind: string | null = firstKind ?? (spec ? (singletonOf(`${spec.method} ${spec.url}`)?.kind ?? null) : null);
      let resourceUuid: string | null = firstParam ? (params[firstParam] ?? null) : null;
      let after: unknown = null;
      const failed = status >= 400;
      if (failed) {
        // A refused call changed nothing: the record keeps who tried which route and the error code,
        // not the ids it named (a 404 id may belong to another account).
        after = { error: errorCode(payload) };
        if (status === 404) resourceUuid = null;
      } else {
        if (resources.length > 0 || (spec && singletonOf(`${spec.method} ${spec.url}`))) {
          after = snapshot(request, spec);
        } else if (typeof payload === 'string' && payload.length <= MAX_AUDIT_JSON) {
          // A create: the answer describes what was made.
          try {
            after = JSON.parse(payload);
          } catch {
            after = null;
          }
          const made = after as { uuid?: unknown } | null;
          if (made && typeof made.uuid === 'string') {
            resourceUuid = made.uuid;
            resourceKind ??= spec?.tags[0] ?? null;
          }
        }
      }
      const length = Number(request.headers['content-length'] ?? 0);
      const body =
        request.body !== undefined && !Buffer.isBuffer(request.body) && typeof request.body === 'object'
        && typeof (request.body as { pipe?: unknown } | null)?.pipe !== 'function' && length <= MAX_AUDIT_JSON
          ? request.body
          : request.body === undefined || request.body === null
            ? undefined
            : { omitted: true, bytes: length };
      services.audit.record(ctx.accountId, {
        at: services.clock.now(),
        actor: { type: 'user', userUuid: ctx.userUuid, username: ctx.username, via: ctx.via },
        action: `${request.method} ${spec?.url ?? request.routeOptions.url ?? request.url.split('?', 1)[0]}`,
        resourceKind,
        resourceUuid,
        status,
        request: failed
          ? null
          : {
              ...(Object.keys(params).length > 0 ? { params } : {}),
              ...(request.query && Object.keys(request.query as object).length > 0 ? { query: request.query } : {}),
              ...(body === undefined ? {} : { body }),
            },
        before: failed ? null : (pending.get(request)?.before ?? null),
        after,
      });
    } catch (err) {
      request.log.error({ err }, 'audit record failed');
    }
    return payload;
  });
}

function errorCode(payload: unknown): string | null {
  if (typeof payload !== 'string' || payload.length > MAX_AUDIT_JSON) return null;
  try {
    const code = (JSON.parse(payload) as { code?: unknown }).code;
    return typeof code === 'string' ? code : null;
  } catch {
    return null;
  }
}
