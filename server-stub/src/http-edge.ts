import { Buffer } from 'node:buffer';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ServerConfig } from './config.js';
import { AppError, type ServerErrorCode, ServerErrors } from './errors.js';

/**
 * The HTTP edge: what every listener enforces before a route sees a request. Timeouts bound how
 * long an unauthenticated client can hold a socket (a client that sends headers and then a body a
 * byte at a time is cut off after `httpRequestTimeoutMs`); bodies are UTF-8 only; errors the HTTP
 * parser raises before fastify has a request are answered with a catalogue code too.
 */

/** Fastify server options for the timeouts (passed to `Fastify()`; apply to HTTP and HTTPS alike). */
export function edgeServerOptions(config: ServerConfig) {
  // Node checks request and header deadlines on a timer (default every 30 s, which would let a
  // 1 s timeout run for 31 s); a quarter of the shorter deadline, between 250 ms and 5 s, keeps the
  // overshoot small while a check of every open connection stays rare.
  const connectionsCheckingInterval = Math.max(
    250,
    Math.min(5_000, Math.floor(Math.min(config.httpHeadersTimeoutMs, config.httpRequestTimeoutMs) / 4)),
  );
  return {
    requestTimeout: config.httpRequestTimeoutMs,
    keepAliveTimeout: config.httpKeepAliveTimeoutMs,
    connectionTimeout: config.httpIdleTimeoutMs,
    http: { headersTimeout: config.httpHeadersTimeoutMs, connectionsCheckingInterval },
    httpsExtra: { headersTimeout: config.httpHeadersTimeoutMs, connectionsCheckingInterval },
  };
}

/** After `Fastify()`: node's server only takes headersTimeout from its options at creation for HTTP. */
export function applyEdgeTimeouts(app: FastifyInstance, config: ServerConfig): void {
  app.server.headersTimeout = config.httpHeadersTimeoutMs;
  app.server.requestTimeout = config.httpRequestTimeoutMs;
}

/** Maps an error of node's HTTP parser (before any request object exists) to a catalogue code. */
export function clientErrorCode(err: NodeJS.ErrnoException): ServerErrorCode {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return 'SERVER_REQUEST_TIMEOUT';
  if (err.code === 'HPE_HEADER_OVERFLOW') return 'SERVER_HEADERS_TOO_LARGE';
  return 'SERVER_BAD_HTTP';
}

/**
 * Answers a client error (malformed request line or headers, too large headers, request timeout)
 * with a catalogue body on the raw socket and closes it: after a parser error the connection's
 * framing is lost, so it cannot be reused.
 */
export function edgeClientErrorHandler(onError: (code: ServerErrorCode) => void) {
  return function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    const code = clientErrorCode(err);
    onError(code);
    const status = ServerErrors[code].status;
    const body = JSON.stringify(new AppError(code).toBody());
    if (socket.writable) {
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json; charset=utf-8\r\n`
        + `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    }
    socket.destroy();
  };
}

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** The charset parameter of a Content-Type header, lower-cased, or undefined when there is none. */
export function charsetOf(contentType: string | undefined): string | undefined {
  const match = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType ?? '');
  return match?.[1]?.toLowerCase();
}

/** Refuses a body that declares a charset other than UTF-8 (415): it would be misread as UTF-8. */
export function requireUtf8Charset(request: FastifyRequest): void {
  const charset = charsetOf(request.headers['content-type']);
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
    throw new AppError(
      'SERVER_UNSUPPORTED_MEDIA_TYPE',
      `The body is declared as charset=${charset}; only UTF-8 is accepted.`,
    );
  }
}

/** Decodes UTF-8 strictly: an invalid sequence (an encoded lone surrogate too) is refused, never replaced. */
export function decodeUtf8Strict(body: Buffer): string {
  try {
    return fatalUtf8.decode(body);
  } catch {
    throw new AppError('SERVER_BAD_ENCODING', 'The request body is not valid UTF-8.');
  }
}

/**
 * Replaces fastify's JSON body parser: UTF-8 only (declared charset and bytes), and `null` is not a
 * body (it used to be read as `{}`). Prototype-poisoning keys are refused as before.
 */
export function installJsonParser(app: FastifyInstance, bodyLimit: number): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit }, (request, body, done) => {
    try {
      requireUtf8Charset(request);
      const text = decodeUtf8Strict(body as Buffer);
      parseJson(request, text, (err, value) => {
        if (err) return done(err, undefined);
        if (value === null) {
          return done(new AppError('SERVER_VALIDATION', 'body: null is not a request body; send an object.'), undefined);
        }
        return done(null, value);
      });
    } catch (err) {
      done(err as Error, undefined);
    }
  });
}

/** Requests that arrive while the server closes: 503 SERVER_UNAVAILABLE (retryable), connection closed. */
export function installClosingGate(app: FastifyInstance): void {
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (_request, reply) => {
    if (!closing) return;
    reply.header('connection', 'close');
    throw new AppError('SERVER_UNAVAILABLE');
  });
}

/** True when every `%XX` sequence of a query string decodes as UTF-8 (no encoded surrogate either). */
export function queryIsUtf8(query: string): boolean {
  if (!query.includes('%')) return true;
  for (const part of query.split(/[&=]/)) {
    try {
      decodeURIComponent(part.replace(/\+/g, ' '));
    } catch {
      return false;
    }
  }
  return true;
}

/**
 * Refuses a query string whose percent-encoding is not UTF-8 (400 SERVER_BAD_ENCODING): the query
 * parser would replace such bytes silently, so the value used would not be the value sent.
 */
export function installQueryCheck(app: FastifyInstance): void {
  app.addHook('onRequest', async (request) => {
    const at = request.url.indexOf('?');
    if (at !== -1 && !queryIsUtf8(request.url.slice(at + 1))) {
      throw new AppError('SERVER_BAD_ENCODING', 'The query string is not valid UTF-8 percent-encoding.');
    }
  });
}
