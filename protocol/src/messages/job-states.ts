import { Type } from '@sinclair/typebox';

/**
 * The states of one job execution (one job on one device), shared by agent and server.
 *
 * - `queued`: created on the server, not yet sent to the device.
 * - `offered`: the server sent a `job-offer`; the device has not started.
 * - `downloading`: the device is fetching the packet (repeat the state to report progress).
 * - `downloaded`: the packet is on the device and fully verified (signature, hashes, compatibility).
 * - `installing`: sections are being installed. **The commit point**: from here on a cancel cannot stop it.
 * - `rebooting`: the device reboots into new firmware.
 * - `verifying`: the health check after install or reboot.
 * - `succeeded`, `failed`, `rejected` (device refused: incompatible, downgrade, bad signature),
 *   `cancelled`, `timed-out`: terminal. A retry is a new execution.
 */
export const JOB_EXECUTION_STATES = [
  'queued',
  'offered',
  'downloading',
  'downloaded',
  'installing',
  'rebooting',
  'verifying',
  'succeeded',
  'failed',
  'rejected',
  'cancelled',
  'timed-out',
] as const;

export type JobExecutionState = (typeof JOB_EXECUTION_STATES)[number];

export const JobExecutionStateSchema = Type.Union(
  JOB_EXECUTION_STATES.map((s) => Type.Literal(s)),
  { description: 'Job execution state (see the job lifecycle)' },
);

/** States after which nothing changes. */
export const TERMINAL_JOB_STATES: readonly JobExecutionState[] = [
  'succeeded',
  'failed',
  'rejected',
  'cancelled',
  'timed-out',
];

/** States in which a cancel still aborts cleanly (before the commit point). */
export const CANCELLABLE_JOB_STATES: readonly JobExecutionState[] = [
  'queued',
  'offered',
  'downloading',
  'downloaded',
];

/**
 * Legal transitions `from → to[]`. Reporting the current state again is a progress update and is
 * legal in every non-terminal state (it is not listed here). Forward jumps that happen after a
 * restart (for example `offered → downloaded` when the packet was already on the device, or
 * `offered → succeeded` when it was already installed) are listed explicitly.
 */
export const JOB_TRANSITIONS: Readonly<Record<JobExecutionState, readonly JobExecutionState[]>> = {
  queued: ['offered', 'cancelled', 'timed-out', 'failed'],
  offered: ['downloading', 'downloaded', 'succeeded', 'rejected', 'failed', 'cancelled', 'timed-out'],
  downloading: ['downloaded', 'rejected', 'failed', 'cancelled', 'timed-out'],
  downloaded: ['installing', 'rejected', 'failed', 'cancelled', 'timed-out'],
  installing: ['rebooting', 'verifying', 'succeeded', 'failed', 'timed-out'],
  // `succeeded` without `verifying`: a device whose health check passed while it had no channel
  // (rejected for want of a licence after its reboot) reports only its result when it is back.
  rebooting: ['verifying', 'succeeded', 'failed', 'timed-out'],
  verifying: ['succeeded', 'failed', 'timed-out'],
  succeeded: [],
  failed: [],
  rejected: [],
  cancelled: [],
  'timed-out': [],
};

export function isTerminalJobState(state: JobExecutionState): boolean {
  return TERMINAL_JOB_STATES.includes(state);
}

/** True when `to` may follow `from` (same non-terminal state = progress update). */
export function isLegalJobTransition(from: JobExecutionState, to: JobExecutionState): boolean {
  if (from === to) return !isTerminalJobState(from);
  return JOB_TRANSITIONS[from].includes(to);
}

/** Every state reachable from each state in one or more legal transitions (derived from JOB_TRANSITIONS). */
const REACHABLE = new Map<JobExecutionState, ReadonlySet<JobExecutionState>>(
  JOB_EXECUTION_STATES.map((from) => {
    const seen = new Set<JobExecutionState>();
    const queue: JobExecutionState[] = [...JOB_TRANSITIONS[from]];
    while (queue.length > 0) {
      const s = queue.shift()!;
      if (seen.has(s)) continue;
      seen.add(s);
      queue.push(...JOB_TRANSITIONS[s]);
    }
    return [from, seen];
  }),
);

/**
 * True when `to` can follow `from` through any number of legal transitions (or is the same
 * non-terminal state: a progress update). A receiver that missed reports (a restart lost them, or
 * the sender was offline while it went on) judges the next one with this instead of
 * `isLegalJobTransition`: `downloading → succeeded` is reachable, `installing → downloading` is not.
 */
export function isReachableJobState(from: JobExecutionState, to: JobExecutionState): boolean {
  if (from === to) return !isTerminalJobState(from);
  return REACHABLE.get(from)?.has(to) ?? false;
}

/**
 * The shortest chain of legal transitions from `from` to `to`: the states to report after `from`,
 * in order, ending with `to` (`from` itself excluded). A sender that skipped states (it was offline,
 * or jumped ahead after a restart) reports this chain so that its receiver sees every step legal.
 *
 * - `from === to` gives `[to]` (a progress update, or a repeat of the state).
 * - When `to` is not reachable from `from` (`isReachableJobState` is false, for example a step
 *   backwards or out of a terminal state) there is no legal chain, and the result is `[to]`: the
 *   caller reports the state itself and the receiver judges it.
 *
 * @example jobStatePath('downloading', 'verifying') // ['downloaded', 'installing', 'verifying']
 */
export function jobStatePath(from: JobExecutionState, to: JobExecutionState): JobExecutionState[] {
  // A fresh copy: callers may change the array they get.
  return [...STATE_PATHS[STATE_INDEX[from]]![STATE_INDEX[to]]!];
}

/** The shortest legal chain between `from` and `to`, found once by a breadth-first search. */
function searchJobStatePath(from: JobExecutionState, to: JobExecutionState): JobExecutionState[] {
  if (from === to) return [to];
  const previous = new Map<JobExecutionState, JobExecutionState>();
  const queue: JobExecutionState[] = [from];
  while (queue.length > 0) {
    const s = queue.shift()!;
    for (const n of JOB_TRANSITIONS[s]) {
      if (n === from || previous.has(n)) continue;
      previous.set(n, s);
      if (n === to) {
        const path: JobExecutionState[] = [to];
        for (let p = s; p !== from; p = previous.get(p)!) path.unshift(p);
        return path;
      }
      queue.push(n);
    }
  }
  return [to];
}

const STATE_INDEX = Object.fromEntries(JOB_EXECUTION_STATES.map((s, i) => [s, i])) as Record<JobExecutionState, number>;

/**
 * `jobStatePath` for every pair of states, computed at load: the agent asks for a chain on every
 * report it sends (an offer's `offered` included), and a search per call showed in the simulator's
 * CPU profile of a 15,000-router job.
 */
const STATE_PATHS: readonly (readonly (readonly JobExecutionState[])[])[] = JOB_EXECUTION_STATES.map((from) =>
  JOB_EXECUTION_STATES.map((to) => Object.freeze(searchJobStatePath(from, to))),
);
