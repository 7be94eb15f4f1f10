/**
 * The load tests' error catalogue: stable codes for what a user can act on (a missing broker, an
 * option that cannot work on this machine). The CLI prints `CODE: message` and exits 1 (2 for usage).
 */
export const LoadtestErrorCodes = {
  LOADTEST_USAGE: { exitCode: 2, message: 'The command line is invalid (an option out of range or not available with the others).' },
  LOADTEST_MOSQUITTO_MISSING: { exitCode: 1, message: 'mosquitto or its dynamic-security plugin is not installed (apt-get install mosquitto).' },
  LOADTEST_BROKER_FAILED: { exitCode: 1, message: 'A Mosquitto broker of the run did not start or exited.' },
  LOADTEST_STORE_UNREACHABLE: { exitCode: 1, message: 'The PostgreSQL server or database named by --store cannot be reached.' },
  LOADTEST_REPORT_INVALID: { exitCode: 1, message: 'A report file cannot be read or is not a report of this version.' },
  LOADTEST_STORE_NOT_EMPTY: { exitCode: 1, message: 'The PostgreSQL database given to --store already holds tables: a run needs an empty one.' },
} as const satisfies Record<string, { exitCode: number; message: string }>;

export type LoadtestErrorCode = keyof typeof LoadtestErrorCodes;

export class LoadtestError extends Error {
  override readonly name = 'LoadtestError';
  readonly code: LoadtestErrorCode;

  constructor(code: LoadtestErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? LoadtestErrorCodes[code].message, options);
    this.code = code;
  }

  get exitCode(): number {
    return LoadtestErrorCodes[this.code].exitCode;
  }
}
