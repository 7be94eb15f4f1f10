import { isLegalJobTransition, type JobExecutionState } from '@router-fleet/protocol';

/**
 * The first illegal step in the job states a device sent for one execution (repeats skipped), or
 * undefined when the whole sequence is legal starting from `from`.
 */
export function illegalStep(states: readonly string[], from: JobExecutionState = 'offered'): string | undefined {
  let last = from;
  for (const s of states as readonly JobExecutionState[]) {
    if (s === last) continue;
    if (!isLegalJobTransition(last, s)) return `${last} → ${s} in ${states.join(', ')}`;
    last = s;
  }
  return undefined;
}
