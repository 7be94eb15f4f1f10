import { REBOOT_EXIT_CODE } from './platform/emulated.js';

/**
 * Exit codes of `fleet-agent`. A supervisor (the agent's own, systemd, a container runtime) reads
 * them to decide whether starting the agent again can help:
 * - 0 stopped on request; 1 an error that a restart may cure (restart, with a delay);
 * - 2 usage, configuration or not provisioned: the same start fails the same way, so a supervisor
 *   must not restart (systemd `RestartPreventExitStatus=2 73`), or an unprovisioned router prints
 *   AGENT_NOT_PROVISIONED every few seconds forever;
 * - 73 the data directory is locked by another running agent (sysexits EX_CANTCREAT): a second
 *   agent on the same directory would corrupt the journal; restarting only repeats the refusal;
 * - 75 reboot requested by an update (sysexits EX_TEMPFAIL): start again at once.
 */
export const ExitCodes = {
  STOPPED: 0,
  ERROR: 1,
  CONFIG: 2,
  DATA_DIR_LOCKED: 73,
  REBOOT: REBOOT_EXIT_CODE,
} as const;

/** Codes after which a supervisor must stop instead of starting the agent again. */
export const NO_RESTART_EXIT_CODES: readonly number[] = [ExitCodes.CONFIG, ExitCodes.DATA_DIR_LOCKED];

/** Agent error codes that mean "fix the configuration or provision first" (exit 2). */
const CONFIG_ERRORS = new Set(['AGENT_CONFIG_INVALID', 'AGENT_NOT_PROVISIONED', 'AGENT_PROFILE_INVALID']);

/** The exit code for an error that ended a command. */
export function exitCodeOf(error: unknown): number {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && CONFIG_ERRORS.has(code)) return ExitCodes.CONFIG;
  if (code === 'AGENT_DATA_DIR_LOCKED') return ExitCodes.DATA_DIR_LOCKED;
  return ExitCodes.ERROR;
}
