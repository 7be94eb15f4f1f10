import pRetry, { AbortError } from 'p-retry';
import { Agent as HttpAgent, type Dispatcher, request } from 'undici';

/**
 * Errors raised before a request reached the server (nothing was sent, so any method may be tried
 * again): a server whose accept queue is behind under load answers the TCP handshake late, one that
 * is restarting refuses it for a moment.
 */
const NOT_SENT = new Set(['UND_ERR_CONNECT_TIMEOUT', 'ECONNREFUSED']);
/** Tries of a request whose connection could not be made, with exponential backoff from 1 s. */
const CONNECT_TRIES = 6;

/** Options of the management REST client. */
export interface RestOptions {
  /** Base URL of the server (`https://host:port`). */
  server: string;
  /** Bearer token (login or API token). Never logged. */
  token?: string;
  /** PEM CA that verifies an HTTPS server (default: the system's). */
  caPem?: string;
}

/** A REST error with the server's stable code (`SERVER_…`) when it sent one. */
export class RestError extends Error {
  override readonly name = 'RestError';
  constructor(
    readonly status: number,
    readonly code: string | undefined,
    message: string,
    /** The error body's `details` (e.g. the per-row report of a refused CSV import). */
    readonly details?: unknown,
  ) {
    super(message);
  }
}

/** A small client for the management API: JSON in, JSON out, one keep-alive pool. */
export class RestClient {
  readonly server: string;
  token: string | undefined;
  /** When set, every request aborts when it does (a caller's deadline over several calls). */
  signal: AbortSignal | undefined;
  readonly #dispatcher: Dispatcher;

  constructor(options: RestOptions) {
    this.server = options.server.replace(/\/+$/, '');
    this.token = options.token;
    this.#dispatcher = new HttpAgent({
      connections: 8,
      connect: { timeout: 30_000, ...(options.caPem ? { ca: options.caPem } : {}) },
      headersTimeout: 600_000,
      bodyTimeout: 600_000,
    });
  }

  #headers(contentType?: string): Record<string, string> {
    return {
      ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
      ...(contentType ? { 'content-type': contentType } : {}),
    };
  }

  /**
   * Sends a request and returns the raw response (the caller reads the body). A connection that
   * could not be made is tried again (see NOT_SENT); anything after the request was sent is not.
   */
  async raw(method: Dispatcher.HttpMethod, path: string, body?: string | Buffer, contentType?: string) {
    const res = await pRetry(
      async () => {
        try {
          return await request(`${this.server}${path}`, {
            method,
            headers: this.#headers(body === undefined ? undefined : contentType ?? 'application/json'),
            ...(body === undefined ? {} : { body }),
            dispatcher: this.#dispatcher,
            ...(this.signal ? { signal: this.signal } : {}),
          });
        } catch (err) {
          const code = (err as { code?: string }).code;
          if (code !== undefined && NOT_SENT.has(code)) throw err as Error;
          throw new AbortError(err as Error);
        }
      },
      { retries: CONNECT_TRIES - 1, minTimeout: 1_000, factor: 2, ...(this.signal ? { signal: this.signal } : {}) },
    );
    if (res.statusCode >= 400) {
      const text = await res.body.text();
      let code: string | undefined;
      let message = text.slice(0, 500);
      let details: unknown;
      try {
        const parsed = JSON.parse(text) as { code?: string; message?: string; details?: unknown };
        code = parsed.code;
        message = parsed.message ?? message;
        details = parsed.details;
      } catch {
        // not JSON
      }
      throw new RestError(res.statusCode, code, `${method} ${path}: HTTP ${res.statusCode} ${code ?? ''} ${message}`.trim(), details);
    }
    return res;
  }

  async json<T>(method: Dispatcher.HttpMethod, path: string, body?: unknown): Promise<T> {
    const res = await this.raw(method, path, body === undefined ? undefined : JSON.stringify(body));
    if (res.statusCode === 204) {
      await res.body.dump();
      return undefined as T;
    }
    return (await res.body.json()) as T;
  }

  /** Logs in and keeps the token. */
  async login(username: string, password: string): Promise<string> {
    const { token } = await this.json<{ token: string }>('POST', '/api/auth/login', { username, password });
    this.token = token;
    return token;
  }

  async close(): Promise<void> {
    await this.#dispatcher.close();
  }
}
