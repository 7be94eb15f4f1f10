/**
 * The agent's error catalogue. Every failure the agent reports (in a job-progress `errorCode`, an
 * event, a log line or a CLI exit) carries one of these stable codes. Codes never change meaning.
 * `retryable` says whether doing the same thing again later may succeed.
 */
export const AgentErrorCodes = {
  // ── program errors: a bug, the agent stops ─────────────────────────────────────────────
  AGENT_NO_TRANSITION: { retryable: false, message: 'The transition table has no row for this (state, outcome).' },
  AGENT_INTERNAL: { retryable: false, message: 'An unexpected internal error.' },
  // ── configuration and provisioning ─────────────────────────────────────────────────────
  AGENT_CONFIG_INVALID: { retryable: false, message: 'The configuration is invalid.' },
  AGENT_NOT_PROVISIONED: { retryable: false, message: 'No connection profile: run `fleet-agent provision` first.' },
  AGENT_PROFILE_INVALID: { retryable: false, message: 'The connection profile is invalid.' },
  AGENT_TRUST_ANCHORS_INVALID: { retryable: false, message: 'A trust-anchor update was refused (not certificates, or its digest does not match); the old set stays.' },
  AGENT_PROVISION_FAILED: { retryable: false, message: 'The connection-profile packet could not be applied.' },
  AGENT_STORAGE_FAILED: { retryable: true, message: 'Reading or writing persistent storage failed.' },
  AGENT_DATA_DIR_LOCKED: { retryable: false, message: 'Another running agent holds the data directory (its lock file names the pid).' },
  AGENT_JOURNAL_CORRUPT: { retryable: false, message: 'The job journal could not be read; the job is rolled back.' },
  // ── control channel ────────────────────────────────────────────────────────────────────
  AGENT_LINK_DOWN: { retryable: true, message: 'The uplink is down; the server is unreachable.' },
  AGENT_CONNECT_FAILED: { retryable: true, message: 'Opening the control channel failed.' },
  AGENT_AUTH_FAILED: { retryable: false, message: 'The server refused the device credential.' },
  AGENT_HELLO_TIMEOUT: { retryable: true, message: 'No welcome arrived in time after hello.' },
  AGENT_PONG_TIMEOUT: { retryable: true, message: 'No pong arrived within the pong timeout (half-open link).' },
  // ── jobs ───────────────────────────────────────────────────────────────────────────────
  AGENT_BUSY: { retryable: true, message: 'Too many jobs are queued on the device.' },
  AGENT_UNKNOWN_EXECUTION: { retryable: false, message: 'The device does not know this execution.' },
  AGENT_CANCELLED: { retryable: false, message: 'The job was cancelled before the commit point.' },
  AGENT_CANCEL_TOO_LATE: { retryable: false, message: 'The job is past its commit point and cannot be cancelled.' },
  AGENT_DEADLINE_EXCEEDED: { retryable: false, message: 'The job deadline passed before the commit point.' },
  AGENT_WINDOW_MISSED: { retryable: false, message: 'The install window ended before the job could be installed.' },
  AGENT_PACKET_TOO_LARGE: { retryable: false, message: 'The packet is larger than the device accepts.' },
  AGENT_INSUFFICIENT_SPACE: { retryable: false, message: 'Not enough free space to stage the packet.' },
  AGENT_DOWNLOAD_FAILED: { retryable: true, message: 'The download failed (network or server error).' },
  AGENT_DOWNLOAD_HTTP_STATUS: { retryable: false, message: 'The download server answered with an unusable HTTP status.' },
  AGENT_DOWNLOAD_BAD_RANGE: { retryable: true, message: 'The server answered a resume with a wrong or missing Content-Range.' },
  AGENT_DOWNLOAD_SIZE_MISMATCH: { retryable: false, message: 'The server’s packet size differs from the declared size.' },
  AGENT_DOWNLOAD_TOO_LONG: { retryable: false, message: 'The server sent more bytes than the declared size.' },
  AGENT_DOWNLOAD_STALLED: { retryable: true, message: 'The download made too little progress (stall watchdog).' },
  AGENT_DOWNLOAD_INTERRUPTED: { retryable: true, message: 'The download ended before the declared size.' },
  AGENT_DOWNLOAD_HASH_MISMATCH: { retryable: true, message: 'The downloaded packet’s SHA-256 differs from the offer.' },
  AGENT_PACKET_INVALID: { retryable: false, message: 'The packet failed verification.' },
  AGENT_INCOMPATIBLE: { retryable: false, message: 'The packet is not for this device (model, REQUIRED_SW or downgrade).' },
  AGENT_UNSUPPORTED_FILETYPE: { retryable: false, message: 'The packet holds a FILETYPE this device cannot install.' },
  AGENT_STAGING_TAMPERED: { retryable: false, message: 'A staged payload changed after verification.' },
  AGENT_CERTIFICATE_INVALID: { retryable: false, message: 'A certificate is malformed, not valid now or does not chain to a trusted CA.' },
  AGENT_CONTAINER_INVALID: { retryable: false, message: 'A container section or container configuration is invalid.' },
  AGENT_CONFIGURATION_INVALID: { retryable: false, message: 'A configuration section is invalid.' },
  AGENT_INSTALL_FAILED: { retryable: false, message: 'Installing a section failed.' },
  AGENT_INTERRUPTED: { retryable: false, message: 'The agent restarted while installing; the job is rolled back.' },
  AGENT_BOOT_FAILED: { retryable: false, message: 'The device did not boot into the new firmware.' },
  AGENT_HEALTH_CHECK_FAILED: { retryable: false, message: 'The device was not back online and managed within the health-check timeout.' },
  AGENT_COMMIT_FAILED: { retryable: false, message: 'Committing the update failed.' },
  AGENT_ROLLBACK_FAILED: { retryable: false, message: 'Rolling back failed; the device may need attention.' },
  AGENT_TRANSITION_LOOP: { retryable: false, message: 'Too many transitions or restarts for one job (loop breaker).' },
} as const satisfies Record<string, { retryable: boolean; message: string }>;

export type AgentErrorCode = keyof typeof AgentErrorCodes;

/** An agent failure with a stable code. `cause` keeps the underlying error, never shown to the server. */
export class AgentError extends Error {
  override readonly name = 'AgentError';
  readonly code: AgentErrorCode | (string & {});
  readonly retryable: boolean;

  constructor(code: AgentErrorCode, message?: string, options: { cause?: unknown; retryable?: boolean } = {}) {
    super(message ?? AgentErrorCodes[code].message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? AgentErrorCodes[code].retryable;
  }

  /** Wraps an error with another code (e.g. a protocol error's `PROTO_…` code is kept as is). */
  static withCode(code: string, message: string, retryable = false): AgentError {
    const error = new AgentError('AGENT_INTERNAL', message, { retryable });
    (error as { code: string }).code = code;
    return error;
  }
}

export function isAgentError(value: unknown): value is AgentError {
  return value instanceof AgentError;
}

/** Turns anything thrown into an AgentError (unknown errors become `fallback`). */
export function toAgentError(error: unknown, fallback: AgentErrorCode = 'AGENT_INTERNAL'): AgentError {
  if (error instanceof AgentError) return error;
  const code = (error as { code?: unknown })?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (typeof code === 'string' && /^PROTO_[A-Z0-9_]+$/.test(code)) return AgentError.withCode(code, message);
  return new AgentError(fallback, message, { cause: error });
}

/** The catalogue as a Markdown table (agent/README.md shows it; a test keeps the two in agreement). */
export function errorTableMarkdown(): string {
  const rows = Object.entries(AgentErrorCodes).map(
    ([code, { retryable, message }]) => `| \`${code}\` | ${retryable ? 'yes' : 'no'} | ${message} |`,
  );
  return ['| Code | Retryable | Meaning |', '| --- | --- | --- |', ...rows].join('\n');
}
