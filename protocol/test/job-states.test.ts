import { describe, expect, it } from 'vitest';
import {
  CANCELLABLE_JOB_STATES,
  isLegalJobTransition,
  isTerminalJobState,
  JOB_EXECUTION_STATES,
  JOB_TRANSITIONS,
  type JobExecutionState,
  TERMINAL_JOB_STATES,
} from '../src/index.js';

describe('job execution states', () => {
  it('has a row for every state and only known targets', () => {
    expect(Object.keys(JOB_TRANSITIONS).sort()).toEqual([...JOB_EXECUTION_STATES].sort());
    for (const targets of Object.values(JOB_TRANSITIONS)) {
      for (const t of targets) expect(JOB_EXECUTION_STATES).toContain(t);
    }
  });

  it('reaches every state from queued and reaches a terminal state from every state', () => {
    const reachable = new Set<JobExecutionState>(['queued']);
    const queue: JobExecutionState[] = ['queued'];
    while (queue.length) {
      for (const next of JOB_TRANSITIONS[queue.shift()!]) {
        if (!reachable.has(next)) {
          reachable.add(next);
          queue.push(next);
        }
      }
    }
    expect([...reachable].sort()).toEqual([...JOB_EXECUTION_STATES].sort());
    for (const s of JOB_EXECUTION_STATES) {
      if (isTerminalJobState(s)) expect(JOB_TRANSITIONS[s]).toEqual([]);
      else expect(JOB_TRANSITIONS[s].some((t) => TERMINAL_JOB_STATES.includes(t))).toBe(true);
    }
  });

  it('allows cancel exactly before the commit point', () => {
    for (const s of JOB_EXECUTION_STATES) {
      expect(isLegalJobTransition(s, 'cancelled'), s).toBe(CANCELLABLE_JOB_STATES.includes(s));
    }
  });

  it('treats a repeated non-terminal state as a progress update and terminal states as final', () => {
    expect(isLegalJobTransition('downloading', 'downloading')).toBe(true);
    expect(isLegalJobTransition('succeeded', 'succeeded')).toBe(false);
    expect(isLegalJobTransition('succeeded', 'failed')).toBe(false);
    expect(isLegalJobTransition('installing', 'downloading')).toBe(false);
  });
});
