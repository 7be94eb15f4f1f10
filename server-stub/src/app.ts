import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TSchema } from '@sinclair/typebox';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { installAudit } from './audit/hooks.js';
import { FailedLoginAudit } from './audit/logins.js';
import { ROLE_RANK, type RequestContext } from './auth/service.js';
import { type ChannelDeps, ControlChannel } from './channel/channel.js';
import { type ConsoleFallback, installConsole } from './console/plugin.js';
import { authenticateRequest } from './console/session.js';
import { installConsoleStream } from './console/stream.js';
import type { ServerConfig } from './config.js';
import { AppError, isAppError, type ServerErrorCode } from './errors.js';
import {
  applyEdgeTimeouts,
  edgeClientErrorHandler,
  edgeServerOptions,
  installClosingGate,
  installJsonParser,
  installQueryCheck,
  requireUtf8Charset,
} from './http-edge.js';
import { type ClusterRole, HostMembership, mqttConsumerRole, SINGLE_PROCESS } from './hosts/membership.js';
import { installJobs } from './jobs/timers.js';
import { installPeriodic } from './periodic.js';
import { isStorageFull } from './storage-guard.js';
import { jobChannelPort } from './channel/job-port.js';
import { allRoutes } from './routes/index.js';
import { installSmartUpdates } from './smart-updates/timers.js';
import type { Call, RouteSpec } from './routes/route.js';
import { ErrorBody } from './routes/schemas.js';
import { ChannelRepository } from './store/channel.js';
import { DeviceStatusBuffer } from './store/device-status.js';
import { admissionCounts } from './store/leases.js';
import { heldLeaseCount } from './store/seat-hold.js';
import { type AppDeps, createServices, type Services } from './services.js';
import { typeboxValidatorCompiler } from './validation.js';

declare module 'fastify' {
  interface FastifyInstance {
    services: Services;
    channel: ControlChannel;
  }
  interface FastifyRequest {
    fleetCtx: RequestContext | null;
  }
}

export interface BuildAppDeps extends AppDeps {
  /** A pino logger to use instead of one built from the config (the services log through it too). */
  readonly logger?: Logger;
  /** Control-channel options (tests move its monotonic clock; cluster workers add a registry). */
  readonly channel?: Pick<ChannelDeps, 'monotonic' | 'registry' | 'workerTag'>;
  /**
   * Run the periodic licence sweep in this process (default true). In cluster mode only the
   * primary sweeps; workers pass false.
   */
  readonly runSweeps?: boolean;
  /** Directory of the built operator console (default: dist/console/public of this package). */
  readonly consoleDir?: string;
  /**
   * Take part in the cluster of server processes sharing the store (hosts/membership.ts):
   * default on with a PostgreSQL store in a process that runs the sweeps; never on SQLite.
   */
  readonly members?: boolean;
  /** What `server_instances.label` says about this process (default host name and pid). */
  readonly memberLabel?: string;
  /**
   * The cluster member this process admits for when it is not a member itself: a worker of
   * `serve --workers N`, whose primary is the member (leases name it, so that another host
   * releases them when this host dies).
   */
  readonly instanceId?: string;
}

const OPENAPI_INFO = {
  title: 'router-fleet reference server',
  description:
    'Management API of the router-fleet reference server. Errors are `{code, message}`; the codes are listed in docs/errors.md.',
  version: '0.1.0',
};

/** Builds the server (routes, hooks, timers) without listening: tests call `inject()` on it. */
export async function buildApp(config: ServerConfig, deps: BuildAppDeps = {}): Promise<FastifyInstance> {
  const { httpsExtra, http, ...timeouts } = edgeServerOptions(config);
  const https =
    config.tlsCert && config.tlsKey
      ? { https: { cert: readFileSync(config.tlsCert), key: readFileSync(config.tlsKey), ...httpsExtra } }
      : { http };
  let edgeError = (_code: ServerErrorCode): void => {};
  const app = Fastify({
    ...(deps.logger
      ? { loggerInstance: deps.logger }
      : { logger: { level: config.logLevel, redact: ['req.headers.authorization', 'req.headers.cookie'] } }),
    bodyLimit: config.bodyLimitBytes,
    // While closing, requests get 503 SERVER_UNAVAILABLE from installClosingGate (fastify's own
    // 503 body has no catalogue code).
    return503OnClosing: false,
    ...timeouts,
    ...https,
    clientErrorHandler: edgeClientErrorHandler((code) => edgeError(code)),
    // Errors fastify raises before routing (a malformed URL): the same catalogue bodies.
    frameworkErrors: (error, request, reply) => sendError(app, error, request, reply),
  }) as unknown as FastifyInstance;
  // The services log through the app's logger (built first for that).
  const services = createServices(config, { ...deps, logger: app.log as unknown as Logger });
  await services.profiles.init();
  await services.trust.init();
  applyEdgeTimeouts(app, config);
  edgeError = (code) => services.metrics.inc('fleet_errors_total', { code });

  app.decorate('services', services);
  const status = new DeviceStatusBuffer(services.store);
  const channel = new ControlChannel({
    config: services.config,
    clock: services.clock,
    metrics: services.metrics,
    admission: services.admission,
    notices: services.notices,
    trust: services.trust,
    repository: new ChannelRepository(services.store),
    status,
    log: app.log as unknown as Logger,
    ...deps.channel,
  });
  channel.attach(app.server);
  app.decorate('channel', channel);
  // Sessions end before the listener closes: upgraded sockets would otherwise keep it open.
  app.addHook('preClose', async () => {
    await channel.close();
  });
  app.decorateRequest('fleetCtx', null);
  app.setValidatorCompiler(typeboxValidatorCompiler);
  app.addSchema(ErrorBody);
  installJsonParser(app, config.bodyLimitBytes);
  installClosingGate(app);
  installQueryCheck(app);
  app.addContentTypeParser('text/csv', { parseAs: 'buffer', bodyLimit: config.csvBodyLimitBytes }, (req, body, done) => {
    try {
      requireUtf8Charset(req);
      done(null, body);
    } catch (err) {
      done(err as Error, undefined);
    }
  });
  // Several processes (hosts) on one PostgreSQL store: which one does the once-per-cluster work.
  const runSweeps = deps.runSweeps !== false;
  const membership =
    services.store.dialect === 'postgres' && runSweeps && deps.members !== false
      ? new HostMembership({
          store: services.store,
          admission: services.admission,
          log: app.log as unknown as Logger,
          timeoutMs: config.hostTimeoutSec * 1000,
          onDeclaredDead: () => {
            const closed = channel.reconnectAll('server rejoining its cluster');
            app.log.warn({ closed }, 'cluster member: sessions closed so that their devices are admitted again');
          },
          ...(deps.memberLabel ? { label: deps.memberLabel } : {}),
          ...(config.mqttUrl !== null ? { exclusiveRoles: [mqttConsumerRole(config.mqttUrl)] } : {}),
        })
      : undefined;
  const role: ClusterRole = membership ?? SINGLE_PROCESS;
  if (!membership && deps.instanceId) services.admission.instanceId = deps.instanceId;
  installJobs(app, services, role);
  installSmartUpdates(app, services, role);
  services.jobs.attach(jobChannelPort(channel));
  // Analytics batches: the privacy rule is applied again on the server; nothing is kept without consent.
  channel.onMessage('analytics', (message, session) => {
    services.analytics.ingest(session.deviceUuid, session.accountUuid, message.body);
  });
  app.setErrorHandler((error: FastifyError, request, reply) => sendError(app, error, request, reply));
  const methodsOf = routeMethods(allRoutes.filter((r) => !r.testOnly || config.testClock));
  let consoleFallback: ConsoleFallback = () => false;
  app.setNotFoundHandler((request, reply) => {
    // A GET of a path of the operator console's own (client-side) routes: its index.html.
    if (consoleFallback(request, reply)) return reply;
    // A path that exists with other methods: 405 with Allow, not 404.
    const allowed = methodsOf(request.url.split('?', 1)[0] ?? '');
    if (allowed.length > 0 && !allowed.includes(request.method)) {
      reply.header('allow', allowed.join(', '));
      return sendError(app, new AppError('SERVER_METHOD_NOT_ALLOWED'), request, reply);
    }
    return sendError(app, new AppError('SERVER_NOT_FOUND'), request, reply);
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: OPENAPI_INFO,
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  for (const spec of allRoutes) {
    if (spec.testOnly && !config.testClock) continue;
    registerRoute(app, services, spec);
  }
  // The console's live updates (server-sent events read from the store: any worker can serve them).
  installConsoleStream(app, services, { authenticate: (request) => authenticateRequest(services.auth, request) });
  // The operator console at `/` (same origin as the API, which accepts its session cookie).
  consoleFallback = installConsole(app, deps.consoleDir === undefined ? {} : { dir: deps.consoleDir });

  app.addHook('onResponse', async (request, reply) => {
    services.metrics.inc('fleet_http_requests_total');
    // The route pattern, not the path: one series per route, whatever the ids in the URL. Requests
    // no route matched share one series (any path a client makes up would be a new one).
    services.metrics.observe(
      'fleet_http_request_duration_seconds',
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status_class: `${Math.floor(reply.statusCode / 100)}xx` },
      reply.elapsedTime / 1000,
    );
  });
  // One audit record per mutating call, written before the answer leaves (audit/hooks.ts).
  installAudit(app, services, allRoutes);

  registerGauges(services, channel);
  startTimers(app, services, channel, status, runSweeps, role, membership);
  app.addHook('onClose', async () => {
    try {
      services.admission.presence.flush();
      channel.flush();
      // After the channel released its devices (preClose): the others need not.
      membership?.stop();
    } finally {
      services.close();
    }
  });
  return app;
}

function registerGauges(services: Services, channel: ControlChannel): void {
  const { metrics, store } = services;
  metrics.gauge(
    'fleet_storage_free_bytes',
    'Free bytes in the data directory (statfs); -1 when unknown.',
    () => services.storage.freeBytes() ?? -1,
    { aggregate: 'max' },
  );
  metrics.gauge('fleet_devices_connected', 'Devices with an open control channel (all workers).', () => channel.size);
  // Store-wide figures: the same in every worker, so cluster aggregation takes them once.
  const once = { aggregate: 'max' } as const;
  metrics.gauge('fleet_devices_managed', 'Devices holding a licence seat.', () => admissionCounts(store).managed, once);
  metrics.gauge(
    'fleet_devices_unmanaged',
    'Connected devices beyond the licence limit.',
    () => admissionCounts(store).unmanaged,
    once,
  );
  metrics.gauge(
    'fleet_devices_held',
    'Seats held for devices the server lost by its own outage (a restart, a lost MQTT broker) that have not returned yet.',
    () => heldLeaseCount(store),
    once,
  );
  metrics.gauge(
    'fleet_devices_rejected',
    'Devices whose last hello was rejected for want of a licence.',
    () => admissionCounts(store).rejected,
    once,
  );
}

/** For a concrete path, the methods of the routes whose pattern matches it. */
function routeMethods(routes: readonly RouteSpec[]): (path: string) => string[] {
  const escape = (text: string) => text.replace(/[.*+?^$()|[\]\\]/g, '\\$&');
  const patterns = routes.map((r) => ({
    method: r.method,
    re: new RegExp(`^${r.url.split(/\{\w+\}/).map(escape).join('[^/]+')}/?$`),
  }));
  return (path) => [...new Set(patterns.filter((p) => p.re.test(path)).map((p) => p.method))];
}

function startTimers(
  app: FastifyInstance,
  services: Services,
  channel: ControlChannel,
  status: Pick<DeviceStatusBuffer, 'pending'>,
  runSweeps: boolean,
  role: ClusterRole,
  membership: HostMembership | undefined,
): void {
  const { config, admission, clock, auth } = services;
  const leads = () => role.leads();
  // In test mode moving the clock is an event: expire, activate and notify at once.
  if (runSweeps) {
    // Before any device is served: the previous process life's seats are held for their devices.
    // Among several hosts only when the whole cluster starts: one joining a running cluster holds
    // nothing (the devices connected to the others are theirs).
    let held = 0;
    const hold = () => {
      held = admission.startRestartHold().held;
    };
    if (membership) {
      membership.start(hold);
      // Heartbeats from now on: building the rest of the app can take seconds on a loaded host.
      membership.run();
    } else hold();
    if (held > 0) app.log.info({ held }, 'restart hold: seats of the previous process life held for their devices');
    installPeriodic(app, {
      name: 'seat hold',
      periodMs: 1000,
      onClockChange: clock,
      when: leads,
      run: () => {
        const end = admission.checkHold(channel.backlog);
        if (end) app.log.info(end, 'seat hold: caught up with the reconnecting fleet; grace starts for devices not back');
      },
    });
    installPeriodic(app, {
      name: 'licence sweep',
      periodMs: config.sweepIntervalSec * 1000,
      onClockChange: clock,
      runAtStart: true,
      when: leads,
      run: () => {
        admission.sweep();
        services.metrics.inc('fleet_licence_sweeps_total');
      },
    });
  }
  installPeriodic(app, {
    name: 'presence flush',
    periodMs: config.presenceFlushMs,
    run: () => {
      if (admission.presence.pending + status.pending === 0) return;
      // One transaction (one commit, one wait for the write lock) for presence and status together.
      services.store.write(() => {
        admission.presence.flush();
        channel.flush();
      });
    },
  });
  // The storage reserve comes back (and the full mark goes) once space was freed, without a restart.
  installPeriodic(app, { name: 'storage reserve', periodMs: 5_000, run: () => services.storage.replenish() });
  const failedLogins = new FailedLoginAudit(services.audit, services.metrics, app.log, config.loginMaxFailures);
  auth.onLoginFailure((failure) => failedLogins.note(failure));
  installPeriodic(app, {
    name: 'failed-login audit',
    periodMs: config.loginAuditSummarySec * 1000,
    run: () => failedLogins.flush(),
    onClockChange: clock,
  });
  app.addHook('onClose', async () => failedLogins.flush());
  installPeriodic(app, { name: 'session purge', periodMs: 3_600_000, run: () => auth.purgeExpiredSessions(), when: leads });
  // The CLI may rotate keys or import vendor roots while the server runs: pick them up.
  installPeriodic(app, {
    name: 'trust-anchor reload',
    periodMs: config.trustAnchorReloadSec * 1000,
    run: () => void services.trust.reload().catch((err: unknown) => app.log.error({ err }, 'trust-anchor reload failed')),
  });
}

function registerRoute(app: FastifyInstance, services: Services, spec: RouteSpec): void {
  const url = spec.url.replace(/\{(\w+)\}/g, ':$1');
  const status = spec.status ?? 200;
  const response: Record<string, TSchema | { $ref: string }> = { '4xx': { $ref: 'ErrorBody#' } };
  if (spec.response && status !== 204) response[String(status)] = spec.response;
  const schema: Record<string, unknown> = {
    summary: spec.summary,
    tags: [...spec.tags],
    response,
  };
  if (spec.params) schema['params'] = spec.params;
  if (spec.querystring) schema['querystring'] = spec.querystring;
  if (spec.body) schema['body'] = spec.body;
  if (spec.bodyType === 'csv') schema['consumes'] = ['text/csv'];
  if (spec.access !== 'public') schema['security'] = [{ bearer: [] }];

  app.route({
    method: spec.method,
    url,
    schema,
    ...(spec.bodyLimit ? { bodyLimit: spec.bodyLimit } : {}),
    // Authentication, role and plan gates run before the body is parsed or validated: an anonymous
    // caller learns nothing about a route's schema and cannot make the server parse large bodies.
    onRequest: async (request) => {
      if (spec.access === 'public') return;
      // A bearer token, or the console's session cookie (then changes need its CSRF token).
      const ctx = authenticateRequest(services.auth, request);
      request.fleetCtx = ctx;
      if (ROLE_RANK[ctx.role] < ROLE_RANK[spec.access]) throw new AppError('SERVER_FORBIDDEN');
      if (spec.feature) services.licensing.requireFeature(ctx.scope, spec.feature);
      else if (spec.activePlan) services.licensing.requireActivePlan(ctx.scope);
    },
    preValidation: async (request) => {
      if (spec.bodyType === 'csv' && !Buffer.isBuffer(request.body)) {
        throw new AppError('SERVER_UNSUPPORTED_MEDIA_TYPE', 'This route takes a text/csv body.');
      }
    },
    handler: async (request: FastifyRequest, reply: FastifyReply) => {
      const call: Call<unknown, unknown, unknown> = {
        params: request.params,
        query: request.query,
        body: request.body,
        get ctx(): RequestContext {
          if (!request.fleetCtx) throw new AppError('SERVER_UNAUTHORIZED');
          return request.fleetCtx;
        },
        services,
        request,
        reply,
      };
      let result: unknown;
      if (spec.freesSpace && services.storage.full) services.storage.release();
      try {
        result = await spec.handler(call);
      } catch (err) {
        // A delete on a full disk: release the reserve so that its commit fits, and run it once more.
        if (!spec.freesSpace || !isStorageFull(err) || !services.storage.release()) throw err;
        result = await spec.handler(call);
      }
      if (spec.freesSpace) services.storage.replenish();
      if (reply.sent) return reply;
      reply.code(status);
      if (status === 204) return reply.send();
      return result;
    },
  });
}

function sendError(app: FastifyInstance, error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (isStorageFull(error)) app.services.storage.noteFull();
  const appError = toAppError(error);
  if (appError.statusCode >= 500) request.log.error({ err: error }, 'request failed');
  app.services.metrics.inc('fleet_errors_total', { code: appError.code });
  if (appError.retryAfterSec !== undefined) reply.header('retry-after', String(appError.retryAfterSec));
  if (appError.code === 'SERVER_UNAUTHORIZED') reply.header('www-authenticate', 'Bearer');
  return reply.code(appError.statusCode).type('application/json').send(appError.toBody());
}

const FASTIFY_CODES: Readonly<Record<string, ServerErrorCode>> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'SERVER_BAD_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'SERVER_BAD_JSON',
  FST_ERR_CTP_BODY_TOO_LARGE: 'SERVER_BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'SERVER_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'SERVER_VALIDATION',
  FST_ERR_VALIDATION: 'SERVER_VALIDATION',
  FST_ERR_BAD_URL: 'SERVER_BAD_HTTP',
  FST_ERR_MAX_PARAM_LENGTH: 'SERVER_VALIDATION',
  FST_ERR_CTP_INVALID_TYPE: 'SERVER_UNSUPPORTED_MEDIA_TYPE',
};

/** Maps anything thrown to a catalogue error; unknown errors become SERVER_INTERNAL (never details). */
export function toAppError(error: unknown): AppError {
  if (isAppError(error)) return error;
  if (isStorageFull(error)) return new AppError('SERVER_STORAGE_FULL');
  const e = error as Partial<FastifyError> & { validation?: unknown };
  const mapped = e.code ? FASTIFY_CODES[e.code] : undefined;
  if (mapped) return new AppError(mapped, mapped === 'SERVER_VALIDATION' ? e.message : undefined);
  if (e.validation) return new AppError('SERVER_VALIDATION', e.message);
  const status = e.statusCode ?? 500;
  if (status === 404) return new AppError('SERVER_NOT_FOUND');
  if (status === 405) return new AppError('SERVER_METHOD_NOT_ALLOWED');
  if (status === 413) return new AppError('SERVER_BODY_TOO_LARGE');
  if (status === 415) return new AppError('SERVER_UNSUPPORTED_MEDIA_TYPE');
  if (status === 503) return new AppError('SERVER_UNAVAILABLE');
  if (status >= 400 && status < 500) return new AppError('SERVER_VALIDATION', e.message);
  return new AppError('SERVER_INTERNAL');
}
