import { isReachableJobState, isTerminalJobState, type JobExecutionState } from '@router-fleet/protocol';

/**
 * Who decided an execution's terminal state: the device reported it, or the server decided it
 * without the device (its deadline passed, the job was cancelled before the offer went out, the
 * packet could not be made for the device).
 */
export type ResultSource = 'device' | 'server';

/** What the store holds of an execution when a device's report for it arrives. */
export interface RecordedExecution {
  state: JobExecutionState;
  /** Null while the execution is not terminal. */
  resultSource: ResultSource | null;
}

/**
 * What to do with one job-progress report:
 * - `advance`: a non-terminal state reachable from the recorded one (skipped states are the ones
 *   the server missed: reports lost when it died, or made while the device was offline);
 * - `finish`: the device's terminal result, recorded once;
 * - `revise`: the device's terminal result replaces one the server decided without it (a device
 *   that finished after its deadline, or ran an offer the server thought it never sent);
 * - `duplicate`: the result is already the device's own (a repeat; acknowledged again), or the
 *   server decided the result and this is a non-terminal report (the server waits for the result);
 * - `stale`: a non-terminal state behind the recorded one (an old report arriving late).
 */
export type ProgressDecision =
  | { kind: 'advance'; state: JobExecutionState }
  | { kind: 'finish'; state: JobExecutionState }
  | { kind: 'revise'; state: JobExecutionState; previous: JobExecutionState }
  | { kind: 'duplicate' }
  | { kind: 'stale' };

/**
 * Judges a device's report against what the server recorded. The device is the authority on what
 * it did: a terminal result is always recorded, exactly once, whatever the server lost; the
 * server's own guesses (timed-out, cancelled before the device answered) give way to it.
 */
export function decideProgress(recorded: RecordedExecution, reported: JobExecutionState): ProgressDecision {
  const reportedTerminal = isTerminalJobState(reported);
  if (isTerminalJobState(recorded.state)) {
    if (recorded.resultSource === 'server' && reportedTerminal) {
      return { kind: 'revise', state: reported, previous: recorded.state };
    }
    return { kind: 'duplicate' };
  }
  if (reportedTerminal) return { kind: 'finish', state: reported };
  if (isReachableJobState(recorded.state, reported)) return { kind: 'advance', state: reported };
  return { kind: 'stale' };
}
