import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { loadStaticFiles, type StaticFile } from './static-files.js';

/**
 * Content-Security-Policy of the console: scripts, styles and everything else from this origin only;
 * no inline script or style, no eval, no plugins, not framed. Images may be data: URLs (canvas
 * exports, icons inlined by the bundler).
 */
export const CONSOLE_CSP = [
  'default-src \'self\'',
  'script-src \'self\'',
  'style-src \'self\'',
  'img-src \'self\' data:',
  'font-src \'self\'',
  'connect-src \'self\'',
  'object-src \'none\'',
  'base-uri \'none\'',
  'form-action \'self\'',
  'frame-ancestors \'none\'',
].join('; ');

export interface ConsoleOptions {
  /** Directory of the built console (default: dist/console/public of this package). */
  readonly dir?: string;
}

function send(request: FastifyRequest, reply: FastifyReply, file: StaticFile): FastifyReply {
  reply
    .header('content-security-policy', CONSOLE_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('x-frame-options', 'DENY')
    .header('etag', file.etag)
    .header('cache-control', file.immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
  if (request.headers['if-none-match'] === file.etag) return reply.code(304).send();
  return reply.code(200).type(file.type).send(file.body);
}

/** Answers a request the routes did not match with the console's index.html (true) or declines (false). */
export type ConsoleFallback = (request: FastifyRequest, reply: FastifyReply) => boolean;

/**
 * Serves the operator console at `/`: one route per built file, and (through the returned fallback,
 * which the app's not-found handler asks first) index.html for any other GET path outside `/api/`
 * that does not name a file: the console's own routes, e.g. `/devices/…`, so that a reload or a
 * bookmark works. Paths under `/api/` and unknown file names stay 404s of the API.
 */
export function installConsole(app: FastifyInstance, options: ConsoleOptions = {}): ConsoleFallback {
  const files = loadStaticFiles(options.dir);
  const index = files.get('/index.html');
  if (!index) {
    app.log.warn('the operator console is not built (scripts/build-console.mjs): only the API is served');
    return () => false;
  }
  for (const [path, file] of files) {
    app.get(path, { schema: { hide: true } }, (request, reply) => send(request, reply, file));
  }
  app.get('/', { schema: { hide: true } }, (request, reply) => send(request, reply, index));
  return (request, reply) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') return false;
    const path = request.url.split('?', 1)[0] ?? '/';
    const last = path.slice(path.lastIndexOf('/') + 1);
    if (path === '/api' || path.startsWith('/api/') || last.includes('.')) return false;
    send(request, reply, index);
    return true;
  };
}
