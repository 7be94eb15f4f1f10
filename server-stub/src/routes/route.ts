import type { Static, TSchema } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { RequestContext } from '../auth/service.js';
import { AppError } from '../errors.js';
import type { Feature } from '../licensing/plans.js';
import type { Services } from '../services.js';
import type { Role } from '../store/accounts.js';

/** Kinds of account-owned resources a path parameter can name (drives the tenant-isolation test). */
export type ResourceKind =
  | 'device'
  | 'group'
  | 'licence'
  | 'user'
  | 'apiToken'
  | 'template'
  | 'certificate'
  | 'packet'
  | 'job'
  | 'execution';

export type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';

export interface Call<P, Q, B> {
  readonly params: P;
  readonly query: Q;
  readonly body: B;
  /** The caller (throws on public routes, which have none). */
  readonly ctx: RequestContext;
  readonly services: Services;
  readonly request: FastifyRequest;
  readonly reply: FastifyReply;
}

/**
 * One route of the API. Every route is declared in this form and registered by `registerRoutes`,
 * which authenticates, checks the role and the plan gates in one place, hands the handler a
 * request context whose account scope is the only way to reach account data, and records the
 * audit log. The route table is also what the OpenAPI document and the tenant-isolation test are
 * driven from.
 */
export interface RouteSpec<P extends TSchema = TSchema, Q extends TSchema = TSchema, B extends TSchema = TSchema> {
  readonly method: Method;
  readonly url: string;
  readonly summary: string;
  readonly tags: readonly string[];
  /** `public`, or the least role that may call the route (viewer < operator < admin). */
  readonly access: 'public' | Role;
  /** A plan feature the account's plan in force must include. */
  readonly feature?: Feature;
  /** Refused while the account has no active plan licence (device management is disabled). */
  readonly activePlan?: boolean;
  /** What each path parameter names; every `{param}` in `url` must be listed. */
  readonly resources?: Readonly<Record<string, ResourceKind>>;
  readonly params?: P;
  readonly querystring?: Q;
  readonly body?: B;
  /** `csv`: the body is a CSV file (text/csv), given to the handler as a Buffer. */
  readonly bodyType?: 'json' | 'csv';
  readonly bodyLimit?: number;
  /** Success status (default 200; 204 sends no body). */
  readonly status?: number;
  readonly response?: TSchema;
  /**
   * The call frees space (a delete): on a full disk it may use the storage reserve, which is
   * released before it runs (or when it fails for want of space, and then it runs once more).
   */
  readonly freesSpace?: boolean;
  /** A read that is audited like a change (it exports secrets, e.g. device credentials). */
  readonly auditRead?: boolean;
  /** Only registered when the server runs with `--test-clock`. */
  readonly testOnly?: boolean;
  handler(call: Call<Static<P>, Static<Q>, Static<B>>): unknown;
}

export function defineRoute<P extends TSchema, Q extends TSchema, B extends TSchema>(
  spec: RouteSpec<P, Q, B>,
): RouteSpec {
  return spec as unknown as RouteSpec;
}

/** The answer for an id that is not in the caller's account (whether it exists elsewhere or not). */
export function notFound(): never {
  throw new AppError('SERVER_NOT_FOUND');
}
