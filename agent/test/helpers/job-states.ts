import { isLegalJobTransition, type JobExecutionState } from '@router-fleet/protocol';
import { JOURNAL_VERSION, type JobRecord } from '../../src/lifecycle/journal.js';

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

/** A journaled job record in `state` (its offer points nowhere: the tests using it never download). */
export function recordOf(id: string, fields: Partial<JobRecord> & Pick<JobRecord, 'state' | 'transitions'>): JobRecord {
  return {
    v: JOURNAL_VERSION,
    executionId: id,
    jobId: `job-of-${id}`,
    offer: {
      executionId: id,
      jobId: `job-of-${id}`,
      packet: { url: 'https://127.0.0.1:1/p.tar', size: 10, sha256: 'a'.repeat(64) },
      download: { token: 't', expiresAt: Date.now() + 600_000 },
      deadline: Date.now() + 600_000,
      allowDowngrade: false,
    },
    resumes: 0,
    enteredAt: Date.now(),
    ...fields,
  };
}
