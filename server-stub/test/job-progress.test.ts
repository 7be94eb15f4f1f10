import { JOB_EXECUTION_STATES, type JobExecutionState, TERMINAL_JOB_STATES } from '@router-fleet/protocol';
import { describe, expect, it } from 'vitest';
import { decideProgress } from '../src/jobs/progress.js';

const RUNNING = JOB_EXECUTION_STATES.filter((s) => !TERMINAL_JOB_STATES.includes(s));

describe('decideProgress: a device report against the stored execution', () => {
  it('advances through states the server missed (a restart lost them or the device was offline)', () => {
    expect(decideProgress({ state: 'downloading', resultSource: null }, 'rebooting')).toEqual({ kind: 'advance', state: 'rebooting' });
    expect(decideProgress({ state: 'queued', resultSource: null }, 'downloading')).toEqual({ kind: 'advance', state: 'downloading' });
    expect(decideProgress({ state: 'downloading', resultSource: null }, 'downloading')).toEqual({ kind: 'advance', state: 'downloading' });
  });

  it('records a terminal result from any running state, even one not reachable in the table', () => {
    for (const from of RUNNING) {
      for (const to of TERMINAL_JOB_STATES) {
        expect(decideProgress({ state: from, resultSource: null }, to), `${from} → ${to}`).toEqual({ kind: 'finish', state: to });
      }
    }
  });

  it('ignores states behind the stored one as stale', () => {
    expect(decideProgress({ state: 'installing', resultSource: null }, 'downloading')).toEqual({ kind: 'stale' });
    expect(decideProgress({ state: 'verifying', resultSource: null }, 'offered')).toEqual({ kind: 'stale' });
  });

  it('records the device\'s result once: a second terminal report is a duplicate', () => {
    for (const recorded of TERMINAL_JOB_STATES) {
      for (const reported of JOB_EXECUTION_STATES) {
        expect(decideProgress({ state: recorded, resultSource: 'device' }, reported)).toEqual({ kind: 'duplicate' });
      }
    }
  });

  it('revises a result the server decided without the device by the device\'s own, and waits for it', () => {
    expect(decideProgress({ state: 'timed-out', resultSource: 'server' }, 'succeeded')).toEqual({
      kind: 'revise',
      state: 'succeeded',
      previous: 'timed-out',
    });
    expect(decideProgress({ state: 'cancelled', resultSource: 'server' }, 'failed')).toEqual({
      kind: 'revise',
      state: 'failed',
      previous: 'cancelled',
    });
    // Still running on the device: the server's decision stands until the result arrives.
    const running: JobExecutionState = 'installing';
    expect(decideProgress({ state: 'timed-out', resultSource: 'server' }, running)).toEqual({ kind: 'duplicate' });
  });
});
