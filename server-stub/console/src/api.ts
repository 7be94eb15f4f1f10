/**
 * Typed fetch client of the REST API. The console authenticates with its session cookie (sent by
 * the browser, same origin); every unsafe request carries the session's CSRF token. Errors become
 * `ApiError` with the server's stable code; a 401 on an authenticated call means the session is
 * over, and the listeners registered with `onSessionExpired` are told (the shell shows the login).
 */

export type Role = 'admin' | 'operator' | 'viewer';
export type Language = 'en' | 'de';

export interface User {
  uuid: string;
  username: string;
  role: Role;
  language: Language;
  profile: Record<string, string>;
  createdAt: string;
}

export interface ConsoleSession {
  user: User;
  csrfToken: string;
  expiresAt: string;
  expiresInSec: number;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** The error's `details` (e.g. the report of a refused CSV import), when the server sent any. */
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';

const SAFE: ReadonlySet<Method> = new Set(['GET']);
let csrf: string | null = null;
const expiredListeners = new Set<() => void>();

export function setCsrfToken(token: string | null): void {
  csrf = token;
}

/** The session's CSRF token (for requests made without `request`, e.g. a CSV body). */
export function csrfToken(): string | null {
  return csrf;
}

/** Called when an authenticated request is refused with 401 (the session ended). */
export function onSessionExpired(listener: () => void): () => void {
  expiredListeners.add(listener);
  return () => expiredListeners.delete(listener);
}

export interface RequestOptions {
  /** A 401 is an answer, not the end of the session (login, session check). */
  readonly anonymous?: boolean;
  readonly signal?: AbortSignal;
  /** Send the body as it is (a file: Blob or text) with this content type, instead of as JSON. */
  readonly contentType?: string;
}

export async function request<T>(method: Method, url: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  const raw = options.contentType !== undefined;
  if (body !== undefined) headers['content-type'] = options.contentType ?? 'application/json';
  if (!SAFE.has(method) && csrf !== null) headers['x-csrf-token'] = csrf;
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers,
      credentials: 'same-origin',
      ...(body === undefined ? {} : { body: raw ? (body as BodyInit) : JSON.stringify(body) }),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(0, 'CONSOLE_NETWORK', 'The server cannot be reached.');
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let data: unknown = undefined;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = undefined;
  }
  if (!res.ok) {
    const e = (data ?? {}) as { code?: unknown; message?: unknown; details?: unknown };
    const code = typeof e.code === 'string' ? e.code : `HTTP_${res.status}`;
    if (res.status === 401 && !options.anonymous) for (const l of [...expiredListeners]) l();
    throw new ApiError(res.status, code, typeof e.message === 'string' ? e.message : res.statusText, e.details);
  }
  return data as T;
}

export const api = {
  get: <T>(url: string, options?: RequestOptions) => request<T>('GET', url, undefined, options),
  post: <T>(url: string, body?: unknown, options?: RequestOptions) => request<T>('POST', url, body ?? {}, options),
  patch: <T>(url: string, body: unknown, options?: RequestOptions) => request<T>('PATCH', url, body, options),
  put: <T>(url: string, body: unknown, options?: RequestOptions) => request<T>('PUT', url, body, options),
  del: <T = void>(url: string, options?: RequestOptions) => request<T>('DELETE', url, undefined, options),
};

/** The console session of the cookie, or null when there is none. */
export async function currentSession(): Promise<ConsoleSession | null> {
  try {
    return await api.get<ConsoleSession>('/api/console/session', { anonymous: true });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return null;
    throw err;
  }
}

export function login(username: string, password: string): Promise<ConsoleSession> {
  return api.post<ConsoleSession>('/api/console/session', { username, password }, { anonymous: true });
}

export function logout(): Promise<void> {
  return api.del('/api/console/session', { anonymous: true });
}
