import type { ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { RequestContext } from '../auth/service.js';
import { AppError } from '../errors.js';
import { UUID_PATTERN } from '../routes/schemas.js';
import type { Services } from '../services.js';
import { type LiveFeedOptions, LiveFeeds, type LiveSink } from './live-feeds.js';

/**
 * `GET /api/console/stream` — server-sent events for the console:
 * - without parameters, the caller's fleet: `counts` (online, unmanaged, offline, rejected,
 *   total) and `events` (the newest account events; `snapshot: true` on the first message);
 * - with `?job=<uuid>`, one job: `job` (state and progress counts) and `devices` (rows of the
 *   job's device list whose execution changed).
 * Every connection starts with a `hello` message (a client that reconnected reloads what it shows)
 * and ends with `end` and a reason when the server ends it (session ended, job deleted, shutdown).
 * The data come from the store (console/live-feeds.ts), so any worker process can serve a stream.
 */

/** Comment line sent when nothing else was (proxies and the socket's idle timeout close silent streams). */
const HEARTBEAT_MS = 15_000;
/** A client that has not read this much (bytes) is too slow: the stream is closed; it reconnects. */
const MAX_BUFFERED = 1 << 20;
/** EventSource's reconnection delay (ms), sent to the client. */
const RETRY_MS = 3_000;

const UUID_RE = new RegExp(UUID_PATTERN);

/** One SSE response. */
class SseSink implements LiveSink {
  #closed = false;
  #lastWrite = 0;

  constructor(
    private readonly res: ServerResponse,
    private readonly onClose: () => void,
  ) {}

  get closed(): boolean {
    return this.#closed;
  }

  send(event: string, data: unknown): void {
    this.#write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  heartbeat(now: number): void {
    if (now - this.#lastWrite >= HEARTBEAT_MS) this.#write(': keep-alive\n\n');
  }

  end(reason: string): void {
    if (this.#closed) return;
    this.send('end', { reason });
    this.#closed = true;
    this.res.end();
    this.onClose();
  }

  #write(text: string): void {
    if (this.#closed) return;
    if (this.res.writableLength > MAX_BUFFERED) {
      this.#closed = true;
      this.res.destroy();
      this.onClose();
      return;
    }
    this.#lastWrite = performance.now();
    this.res.write(text);
  }
}

/** How a console request is authenticated (the bearer token, or the console's session cookie). */
export type ConsoleAuthenticate = (request: FastifyRequest) => RequestContext;

export interface ConsoleStreamOptions extends LiveFeedOptions {
  readonly authenticate?: ConsoleAuthenticate;
}

/** Registers the stream route; the feeds end with the app. */
export function installConsoleStream(app: FastifyInstance, services: Services, options: ConsoleStreamOptions = {}): LiveFeeds {
  const log = app.log as unknown as Logger;
  const feeds = new LiveFeeds(services, log.child({ component: 'console-stream' }), options);
  const authenticate: ConsoleAuthenticate = options.authenticate ?? ((request) => services.auth.authenticate(request.headers.authorization));
  const sinks = new Set<SseSink>();
  const heartbeat = setInterval(() => {
    const now = performance.now();
    for (const s of sinks) s.heartbeat(now);
  }, HEARTBEAT_MS / 3);
  heartbeat.unref();
  app.addHook('preClose', async () => {
    clearInterval(heartbeat);
    feeds.close();
    for (const s of sinks) s.end('server-closing');
  });

  app.route({
    method: 'GET',
    url: '/api/console/stream',
    // Not in the OpenAPI document: a console-internal event stream, not part of the REST API.
    schema: { hide: true },
    onRequest: async (request) => {
      request.fleetCtx = authenticate(request);
    },
    handler: async (request, reply) => {
      const ctx = request.fleetCtx;
      if (!ctx) throw new AppError('SERVER_UNAUTHORIZED');
      const query = request.query as Record<string, unknown>;
      const extra = Object.keys(query).filter((k) => k !== 'job');
      if (extra.length > 0) throw new AppError('SERVER_VALIDATION', `Unknown query parameter ${extra[0]}.`);
      const jobUuid = query['job'];
      let job: { id: number; uuid: string } | undefined;
      if (jobUuid !== undefined) {
        if (typeof jobUuid !== 'string' || !UUID_RE.test(jobUuid)) {
          throw new AppError('SERVER_VALIDATION', 'querystring/job must be a job UUID.');
        }
        job = services.jobs.repo(ctx.scope).byUuid(jobUuid);
        if (!job) throw new AppError('SERVER_NOT_FOUND');
      }

      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-store',
        'x-accel-buffering': 'no',
        connection: 'keep-alive',
      });
      // Heartbeats keep the stream alive; the HTTP idle timeout is for requests that wait for nothing.
      request.raw.socket.setTimeout(0);
      res.write(`retry: ${RETRY_MS}\n\n`);
      let unsubscribe = () => {};
      const sink = new SseSink(res, () => {
        sinks.delete(sink);
        unsubscribe();
      });
      sinks.add(sink);
      res.on('close', () => {
        if (!sink.closed) sink.end('client-closed');
      });
      const stillAllowed = () => authenticate(request).userId === ctx.userId;
      sink.send('hello', { job: job?.uuid ?? null });
      unsubscribe = job ? feeds.job(ctx.scope, job, sink, stillAllowed) : feeds.fleet(ctx.scope, sink, stillAllowed);
      if (sink.closed) unsubscribe();
      return reply;
    },
  });
  return feeds;
}
