/**
 * The server's error catalogue: every error body the API sends is `{code, message}` with a code from
 * this table. Codes are stable; `docs/errors.md` lists them (a test keeps the two in agreement).
 */
export interface ErrorEntry {
  readonly status: number;
  readonly message: string;
  /** True when the same request may succeed later without change (the client may retry). */
  readonly retryable?: boolean;
}

export const ServerErrors = {
  // ── request shape ──────────────────────────────────────────────────────────────────────
  SERVER_VALIDATION: { status: 400, message: 'The request does not match the schema of this route.' },
  SERVER_BAD_JSON: { status: 400, message: 'The request body is not valid JSON.' },
  SERVER_UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'The request body has an unsupported content type.' },
  SERVER_BODY_TOO_LARGE: { status: 413, message: 'The request body is larger than this route accepts.' },
  SERVER_NOT_FOUND: { status: 404, message: 'Not found.' },
  SERVER_METHOD_NOT_ALLOWED: { status: 405, message: 'The method is not allowed on this resource.' },
  SERVER_BAD_ENCODING: {
    status: 400,
    message: 'The request body is not valid UTF-8 (or declares a charset other than UTF-8).',
  },
  SERVER_BAD_HTTP: { status: 400, message: 'The request is not valid HTTP/1.1 (the connection is closed).' },
  SERVER_HEADERS_TOO_LARGE: { status: 431, message: 'The request headers are larger than the server accepts.' },
  SERVER_REQUEST_TIMEOUT: {
    status: 408,
    message: 'The request was not received completely within the request timeout (the connection is closed).',
    retryable: true,
  },
  // ── authentication and access ──────────────────────────────────────────────────────────
  SERVER_UNAUTHORIZED: { status: 401, message: 'Authentication required.' },
  SERVER_FORBIDDEN: { status: 403, message: 'Your role does not allow this action.' },
  SERVER_CSRF_TOKEN_INVALID: {
    status: 403,
    message: 'A change made with the session cookie needs the session\'s CSRF token in the x-csrf-token header.',
  },
  SERVER_LOGIN_LOCKED: {
    status: 429,
    message: 'Too many failed logins for this user name from this address; try again later.',
    retryable: true,
  },
  SERVER_RATE_LIMITED: { status: 429, message: 'Too many requests; try again later.', retryable: true },
  SERVER_WRONG_PASSWORD: { status: 403, message: 'The current password is wrong.' },
  SERVER_LAST_ADMIN: { status: 409, message: 'The last admin of an account cannot be removed or demoted.' },
  SERVER_USERNAME_TAKEN: { status: 409, message: 'The user name is already taken.' },
  // ── plan and licence gates ─────────────────────────────────────────────────────────────
  SERVER_NO_ACTIVE_LICENCE: {
    status: 403,
    message: 'The account has no active plan licence; device management is disabled.',
  },
  SERVER_PLAN_FEATURE_UNAVAILABLE: { status: 403, message: 'The account\'s plan does not include this feature.' },
  SERVER_PLAN_DEVICE_LIMIT: {
    status: 403,
    message: 'The account\'s plan does not allow registering more devices.',
  },
  SERVER_API_LICENCE_REQUIRED: { status: 403, message: 'API tokens need an active API licence.' },
  // ── licences ───────────────────────────────────────────────────────────────────────────
  SERVER_LICENCE_CODE_MALFORMED: { status: 400, message: 'A licence code has the form XXXX-XXXX-XXXX (hex).' },
  SERVER_LICENCE_CODE_UNKNOWN: { status: 422, message: 'The licence code is not known.' },
  SERVER_LICENCE_CODE_REDEEMED: { status: 409, message: 'The licence code has already been redeemed.' },
  SERVER_LICENCE_CODE_DUPLICATE: { status: 409, message: 'The licence code occurs more than once in this file.' },
  SERVER_LICENCE_CODE_EXPIRED: {
    status: 422,
    message: 'The licence code was not redeemed within 24 months of issue and has expired.',
  },
  SERVER_LICENCE_PLAN_MIX: {
    status: 409,
    message: 'Licences of different plans cannot be mixed in one account.',
  },
  SERVER_LICENCE_FREE_NOT_COMBINABLE: {
    status: 409,
    message: 'The Free licence cannot be combined with paid licences.',
  },
  SERVER_LICENCE_ALREADY_ACTIVATED: { status: 409, message: 'The licence is already activated or scheduled.' },
  SERVER_LICENCE_NOT_ACTIVATABLE: { status: 409, message: 'The licence has expired or been invalidated.' },
  SERVER_LICENCE_ACTIVATION_DATE: {
    status: 400,
    message: 'The activation date must not be in the past nor after the licence stock deadline.',
  },
  SERVER_LICENCE_BULK_ACTIVATION: {
    status: 409,
    message: 'Some licences cannot be activated; none was (details: {errors: [{licence, code, message}]}).',
  },
  // ── inventory ──────────────────────────────────────────────────────────────────────────
  SERVER_DEVICE_SERIAL_TAKEN: { status: 409, message: 'A device with this serial number is already registered.' },
  SERVER_GROUP_NAME_TAKEN: { status: 409, message: 'A device group with this name already exists.' },
  SERVER_NAME_TAKEN: { status: 409, message: 'An object with this name already exists.' },
  SERVER_CSV_INVALID: {
    status: 400,
    message: 'The CSV file cannot be read (encoding, header, quoting or row count).',
  },
  SERVER_CSV_ROWS_INVALID: {
    status: 422,
    message: 'Some CSV rows are invalid; nothing was imported (see the report).',
  },
  SERVER_ANCHOR_IN_USE: {
    status: 409,
    message: 'This root signs what the server signs now; rotate the signing key before retiring it.',
  },
  SERVER_TOO_MANY_ANCHORS: {
    status: 422,
    message: 'Devices keep at most 16 trust anchors (server, vendor and account roots together).',
  },
  SERVER_INVALID_CURSOR: { status: 400, message: 'The pagination cursor is not valid for this list.' },
  // ── control channel (sent in `error` messages; the HTTP status applies to no route) ──────
  SERVER_DEVICE_AUTH_FAILED: {
    status: 401,
    message: 'The device is unknown or its credential is wrong; the channel closes with 4003.',
  },
  SERVER_HELLO_REQUIRED: {
    status: 400,
    message: 'The first message on the channel must be a valid hello, within the hello timeout.',
  },
  SERVER_UNEXPECTED_MESSAGE: { status: 400, message: 'The message is not expected at this point of the session.' },
  // ── packets, downloads and update jobs ─────────────────────────────────────────────────
  SERVER_PACKET_INVALID: {
    status: 422,
    message: 'The packet was rejected by the packet reader (details: {code, message, entry}).',
  },
  SERVER_PACKET_IN_USE: { status: 409, message: 'The packet is used by an active job and cannot be deleted.' },
  SERVER_FIRMWARE_UNKNOWN: { status: 422, message: 'No vendor firmware with this version is in the catalogue.' },
  SERVER_DOWNLOAD_FORBIDDEN: {
    status: 403,
    message: 'The download credential is not valid for this execution or device.',
  },
  SERVER_DOWNLOAD_EXPIRED: { status: 403, message: 'The download credential has expired.' },
  SERVER_DOWNLOADS_BUSY: {
    status: 503,
    message: 'Too many packet downloads in progress; try again later.',
    retryable: true,
  },
  SERVER_RANGE_NOT_SATISFIABLE: { status: 416, message: 'The requested byte range cannot be served.' },
  SERVER_JOB_STATE: { status: 409, message: 'The job is not in a state that allows this action.' },
  // ── certificate store, configuration templates ─────────────────────────────────────────
  SERVER_CERTIFICATE_INVALID: {
    status: 422,
    message: 'Not exactly one valid X.509 certificate (PEM or DER), or not one that fits this use.',
  },
  SERVER_CERTIFICATE_PRIVATE_KEY: {
    status: 422,
    message: 'Private keys are never accepted by the certificate store; upload the certificate only.',
  },
  SERVER_CERTIFICATE_DUPLICATE: { status: 409, message: 'This certificate (same SHA-256 fingerprint) is already stored.' },
  SERVER_TEMPLATE_INVALID: {
    status: 422,
    message: 'The template has a malformed or unknown placeholder (details: {placeholder}).',
  },
  SERVER_TEMPLATE_VALUE_MISSING: {
    status: 422,
    message: 'A placeholder of the template has no value for this device (details: {missing}).',
  },
  // ── server ─────────────────────────────────────────────────────────────────────────────
  SERVER_CONFIG_INVALID: { status: 500, message: 'The server configuration is invalid.' },
  SERVER_STORE_VERSION: {
    status: 500,
    message: 'The data directory was written by a newer server (unknown schema version).',
  },
  SERVER_STORE_DRIVER_MISSING: {
    status: 500,
    message: 'The SQLite driver for this Node.js version is not installed (reinstall with optional dependencies).',
  },
  SERVER_STORE_UNREACHABLE: {
    status: 500,
    message: 'The PostgreSQL store named by --store cannot be reached (details in the message).',
  },
  SERVER_HOST_ROLE_TAKEN: {
    status: 500,
    message: 'Another live server process on this store already holds a role only one may hold (details in the message).',
  },
  SERVER_UNAVAILABLE: { status: 503, message: 'The server is shutting down or busy.', retryable: true },
  SERVER_STORAGE_FULL: {
    status: 507,
    message: 'The server\'s data directory is full; try again once space was freed (deleting packets works).',
    retryable: true,
  },
  SERVER_INTERNAL: { status: 500, message: 'Internal server error.' },
} as const satisfies Record<string, ErrorEntry>;

export type ServerErrorCode = keyof typeof ServerErrors;

export interface ErrorBody {
  code: ServerErrorCode;
  message: string;
  /** Extra, code-specific data (e.g. a CSV row report, `retryAfterSec`). Never secrets. */
  details?: unknown;
  /** Present (true) when the same request may succeed later without change. */
  retryable?: true;
}

/** An error that maps to one catalogue entry and therefore one HTTP status and body. */
export class AppError extends Error {
  readonly code: ServerErrorCode;
  readonly statusCode: number;
  readonly details: unknown;
  readonly retryAfterSec: number | undefined;

  constructor(
    code: ServerErrorCode,
    message?: string,
    options: { details?: unknown; retryAfterSec?: number } = {},
  ) {
    super(message ?? ServerErrors[code].message);
    this.name = 'AppError';
    this.code = code;
    this.statusCode = ServerErrors[code].status;
    this.details = options.details;
    this.retryAfterSec = options.retryAfterSec;
  }

  toBody(): ErrorBody {
    const body: ErrorBody = { code: this.code, message: this.message };
    if (this.details !== undefined) body.details = this.details;
    if ((ServerErrors[this.code] as ErrorEntry).retryable === true) body.retryable = true;
    return body;
  }
}

export function isAppError(value: unknown): value is AppError {
  return value instanceof AppError;
}
