import { AppError } from '../errors.js';
import { type MaintenanceWindow, nextWindow, validateWindow } from './window.js';

/** Job options as the API takes them. */
export interface JobOptionsInput {
  rollout?: {
    /** Most executions in flight at once (default: no limit). */
    maxConcurrent?: number;
    /** Most new executions (retries included) started in any 60 s (default: no limit). */
    maxPerMinute?: number;
    /**
     * Waves as cumulative percentages of the targets, ascending, e.g. `[10, 50, 100]`: the next wave
     * starts only when every device of the earlier waves has a result (and the job was not aborted).
     */
    waves?: number[];
    /**
     * How long a device that disconnects while installing, rebooting or verifying keeps its licence
     * seat (s, default 600): a reboot into new firmware may outlast the lease grace period.
     */
    rebootTimeoutSec?: number;
  };
  /** Abort (no new executions) when failed devices exceed `failurePercent` of finished ones AND number at least `minFailures`. */
  abort?: { failurePercent: number; minFailures: number };
  /** Per-execution timeout, seconds (default 3600); the execution is `timed-out` when not terminal by then. */
  timeoutSec?: number;
  /** New attempts for devices whose execution failed or timed out (offline devices time out). */
  retries?: { max: number; delaySec?: number };
  /** Maintenance window: devices download at once and install only inside it. */
  window?: MaintenanceWindow;
  allowDowngrade?: boolean;
  /** Devices that join a targeted group (or the account, for `all`) while the job runs are included. */
  dynamic?: boolean;
}

/** Normalized options, stored with the job. */
export interface JobOptions {
  maxConcurrent: number | null;
  maxPerMinute: number | null;
  waves: number[];
  rebootTimeoutSec: number;
  abort: { failurePercent: number; minFailures: number } | null;
  timeoutSec: number;
  retries: number;
  retryDelaySec: number;
  window: MaintenanceWindow | null;
  allowDowngrade: boolean;
  dynamic: boolean;
}

export const DEFAULT_TIMEOUT_SEC = 3600;
/** Default of `rollout.rebootTimeoutSec` (also for jobs stored before the option existed). */
export const DEFAULT_REBOOT_TIMEOUT_SEC = 600;

export function normalizeOptions(input: JobOptionsInput | undefined, now: number): JobOptions {
  const i = input ?? {};
  const waves = i.rollout?.waves ?? [];
  for (let k = 0; k < waves.length; k++) {
    const w = waves[k]!;
    if (!(w > 0 && w <= 100) || (k > 0 && w <= waves[k - 1]!)) {
      throw new AppError('SERVER_VALIDATION', 'rollout.waves must be ascending percentages in (0, 100].');
    }
  }
  if (i.window) {
    try {
      validateWindow(i.window);
    } catch (err) {
      throw new AppError('SERVER_VALIDATION', `window: ${(err as Error).message}`);
    }
    if (!nextWindow(i.window, now)) throw new AppError('SERVER_VALIDATION', 'window: the window has already ended.');
  }
  return {
    maxConcurrent: i.rollout?.maxConcurrent ?? null,
    maxPerMinute: i.rollout?.maxPerMinute ?? null,
    waves,
    rebootTimeoutSec: i.rollout?.rebootTimeoutSec ?? DEFAULT_REBOOT_TIMEOUT_SEC,
    abort: i.abort ?? null,
    timeoutSec: i.timeoutSec ?? DEFAULT_TIMEOUT_SEC,
    retries: i.retries?.max ?? 0,
    retryDelaySec: i.retries?.delaySec ?? 0,
    window: i.window ?? null,
    allowDowngrade: i.allowDowngrade ?? false,
    dynamic: i.dynamic ?? false,
  };
}

/** What the job targets: internal ids (resolved at creation) and the uuids as given. */
export interface JobTarget {
  all: boolean;
  deviceIds: number[];
  groupIds: number[];
  deviceUuids: string[];
  groupUuids: string[];
}
