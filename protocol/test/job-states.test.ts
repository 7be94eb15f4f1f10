import { describe, expect, it } from 'vitest';
import {
  CANCELLABLE_JOB_STATES,
  isLegalJobTransition,
  isReachableJobState,
  isTerminalJobState,
  JOB_EXECUTION_STATES,
  JOB_TRANSITIONS,
  type JobExecutionState,
  jobStatePath,
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

  it('reaches a state through skipped intermediate states, never backwards or out of a terminal state', () => {
    expect(isReachableJobState('downloading', 'succeeded')).toBe(true);
    expect(isReachableJobState('downloading', 'rebooting')).toBe(true);
    expect(isReachableJobState('queued', 'downloading')).toBe(true);
    expect(isReachableJobState('downloading', 'downloading')).toBe(true);
    expect(isReachableJobState('installing', 'downloading')).toBe(false);
    expect(isReachableJobState('verifying', 'installing')).toBe(false);
    expect(isReachableJobState('installing', 'cancelled')).toBe(false); // past the commit point
    expect(isReachableJobState('timed-out', 'succeeded')).toBe(false);
    expect(isReachableJobState('succeeded', 'succeeded')).toBe(false);
    // Every legal transition is reachable, and reachability is transitive.
    for (const a of JOB_EXECUTION_STATES) {
      for (const b of JOB_EXECUTION_STATES) {
        if (isLegalJobTransition(a, b)) expect(isReachableJobState(a, b), `${a} → ${b}`).toBe(true);
        for (const c of JOB_EXECUTION_STATES) {
          if (a !== b && b !== c && isReachableJobState(a, b) && isReachableJobState(b, c)) {
            expect(isReachableJobState(a, c), `${a} → ${b} → ${c}`).toBe(true);
          }
        }
      }
    }
  });

  it('jobStatePath: the shortest legal chain between two states, ending with the target', () => {
    expect(jobStatePath('downloading', 'verifying')).toEqual(['downloaded', 'installing', 'verifying']);
    expect(jobStatePath('offered', 'installing')).toEqual(['downloaded', 'installing']);
    expect(jobStatePath('rebooting', 'verifying')).toEqual(['verifying']);
    expect(jobStatePath('downloading', 'succeeded')).toEqual(['downloaded', 'installing', 'succeeded']);
    expect(jobStatePath('offered', 'succeeded')).toEqual(['succeeded']);
    // The same state: a progress update (or a repeat), not a chain.
    expect(jobStatePath('downloading', 'downloading')).toEqual(['downloading']);
    // No legal chain (backwards, out of a terminal state): the target alone, for the receiver to judge.
    expect(jobStatePath('installing', 'downloading')).toEqual(['downloading']);
    expect(jobStatePath('succeeded', 'failed')).toEqual(['failed']);
  });

  it('jobStatePath returns a fresh array each call: changing one does not change the next', () => {
    const first = jobStatePath('downloading', 'verifying');
    first.pop();
    first.push('failed');
    expect(jobStatePath('downloading', 'verifying')).toEqual(['downloaded', 'installing', 'verifying']);
  });

  it('jobStatePath is legal, loop-free and no longer than any other chain, for every reachable pair', () => {
    // Distances by an independent relaxation over the table (Bellman-Ford style, not a BFS).
    const distance = (from: JobExecutionState, to: JobExecutionState): number => {
      const d = new Map<JobExecutionState, number>([[from, 0]]);
      for (let round = 0; round < JOB_EXECUTION_STATES.length; round++) {
        for (const s of JOB_EXECUTION_STATES) {
          const ds = d.get(s);
          if (ds === undefined) continue;
          for (const n of JOB_TRANSITIONS[s]) if ((d.get(n) ?? Infinity) > ds + 1) d.set(n, ds + 1);
        }
      }
      return d.get(to) ?? Infinity;
    };
    for (const from of JOB_EXECUTION_STATES) {
      for (const to of JOB_EXECUTION_STATES) {
        if (from === to || !isReachableJobState(from, to)) continue;
        const path = jobStatePath(from, to);
        expect(path.at(-1), `${from} → ${to}`).toBe(to);
        expect(new Set([from, ...path]).size, `${from} → ${path.join(' → ')} repeats a state`).toBe(path.length + 1);
        let last = from;
        for (const s of path) {
          expect(isLegalJobTransition(last, s), `${from} → ${path.join(' → ')}`).toBe(true);
          last = s;
        }
        expect(path.length, `${from} → ${path.join(' → ')}`).toBe(distance(from, to));
      }
    }
  });
});
