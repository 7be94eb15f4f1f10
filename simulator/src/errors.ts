/**
 * The simulator's error catalogue. Every failure `fleet-sim` reports carries one of these stable
 * codes, and the code decides the process's exit code (`exitCode`), so scripts can tell a mistake
 * in the command line (2) from a partly failed import (3), failed jobs (4) and anything else (1).
 * Codes never change meaning. simulator/README.md lists them (a test keeps the two in agreement).
 */
export const SimErrorCodes = {
  // ── command line and input files: fix the invocation, running again changes nothing ────────
  SIM_USAGE: { exitCode: 2, message: 'The command line is invalid (unknown command or option, missing or malformed value).' },
  SIM_SERVER_URL_INVALID: { exitCode: 2, message: 'The server URL is not an absolute http://, https://, ws:// or wss:// URL with a host.' },
  SIM_TOKEN_MISSING: { exitCode: 2, message: 'No bearer token: pass --token or set FLEET_SIM_TOKEN.' },
  SIM_FILE_UNREADABLE: { exitCode: 2, message: 'An input file (fleet CSV, scenario, CA, behaviour, profiles) cannot be read.' },
  SIM_SCENARIO_INVALID: { exitCode: 2, message: 'The scenario file is not valid (JSON, fields or steps).' },
  SIM_FLEET_INVALID: { exitCode: 2, message: 'The fleet options are not valid (no routers; bad rate, window, processes or behaviour).' },
  SIM_SHARD_INVALID: { exitCode: 2, message: 'The shard is not K/N with 1 ≤ K ≤ N (--shard 1/2, or shard: { index, count } in a scenario).' },
  SIM_REPORT_INVALID: { exitCode: 2, message: 'A file given to report merge is not a run report that can be merged (JSON, raw histograms, shard and fleet).' },
  SIM_MERGE_FLEETS_DIFFER: { exitCode: 2, message: 'The reports to merge come from different fleets, or slice the fleet into different numbers of shards.' },
  SIM_MERGE_SHARD_DUPLICATE: { exitCode: 2, message: 'Two reports to merge are of the same shard (their routers would count twice).' },
  SIM_MERGE_SHARDS_MISSING: { exitCode: 2, message: 'Some shards of the fleet have no report (--allow-missing merges the others and says which are missing).' },
  // ── outcomes of a run ──────────────────────────────────────────────────────────────────────
  SIM_PROVISION_ROWS_FAILED: { exitCode: 3, message: 'Some rows of the fleet CSV were not registered (see the per-row report).' },
  SIM_JOBS_FAILED: { exitCode: 4, message: 'A job of the scenario ended with failed devices, or was aborted or cancelled.' },
  // ── the server or the machine ──────────────────────────────────────────────────────────────
  SIM_SERVER_ERROR: { exitCode: 1, message: 'The server answered a request with an error (its SERVER_… code is in the message).' },
  SIM_SERVER_UNREACHABLE: { exitCode: 1, message: 'The server could not be reached (connection refused, DNS, TLS).' },
  SIM_TIMEOUT: { exitCode: 1, message: 'A step did not reach its condition within its timeout.' },
  SIM_INTERNAL: { exitCode: 1, message: 'An unexpected internal error.' },
} as const satisfies Record<string, { exitCode: number; message: string }>;

export type SimErrorCode = keyof typeof SimErrorCodes;

/** A simulator failure with a stable code; `exitCode` is the catalogue's. */
export class SimError extends Error {
  override readonly name = 'SimError';
  readonly code: SimErrorCode;
  /** Extra data for the report the CLI prints (e.g. the per-row import report). */
  readonly details: unknown;

  constructor(code: SimErrorCode, message?: string, options: { cause?: unknown; details?: unknown } = {}) {
    super(message ?? SimErrorCodes[code].message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details;
  }

  get exitCode(): number {
    return SimErrorCodes[this.code].exitCode;
  }
}

export function isSimError(value: unknown): value is SimError {
  return value instanceof SimError;
}

/** The catalogue as a Markdown table (simulator/README.md shows it; a test keeps the two in agreement). */
export function simErrorTableMarkdown(): string {
  const rows = Object.entries(SimErrorCodes).map(([code, { exitCode, message }]) => `| \`${code}\` | ${exitCode} | ${message} |`);
  return ['| Code | Exit code | Meaning |', '| --- | --- | --- |', ...rows].join('\n');
}
