import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * Paths pino censors wherever they appear in a log object. The code never logs a credential or a
 * token on purpose; this is the second line of defence.
 */
export const REDACT_PATHS = [
  'credential',
  '*.credential',
  '*.*.credential',
  'token',
  '*.token',
  '*.*.token',
  'authorization',
  '*.authorization',
  'keyPem',
  '*.keyPem',
  'headers.authorization',
];

/** A JSON logger on stderr (stdout stays free for command output). */
export function createLogger(level = 'info', destination?: pino.DestinationStream): Logger {
  return pino(
    { level, base: { name: 'fleet-agent' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } },
    destination ?? pino.destination(2),
  );
}

let silent: Logger | undefined;

/** A logger that drops everything (simulator fleets, tests). One shared instance. */
export function silentLogger(): Logger {
  silent ??= pino({ level: 'silent' });
  return silent;
}

/** A child logger with device context; none when nothing would be logged (thousands of agents per process). */
export function contextLogger(log: Logger, bindings: Record<string, unknown>): Logger {
  return log.isLevelEnabled('fatal') ? log.child(bindings) : log;
}
