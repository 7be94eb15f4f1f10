import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import {
  canMove,
  IllegalJobTransition,
  JOB_LIFECYCLE,
  type JobEvent,
  type JobLifecycleTable,
  jobLifecycleMermaid,
  jobTransitions,
  lifecycleProblems,
  nextJobState,
  renderJobLifecycleDoc,
  statesAllowing,
} from '../src/jobs/job-lifecycle.js';
import { normalizeOptions } from '../src/jobs/options.js';
import { JobOutcomes } from '../src/jobs/outcomes.js';
import { Metrics } from '../src/metrics.js';
import { Store } from '../src/store/database.js';
import { insertJob, jobById, type JobState } from '../src/store/jobs.js';
import { removeTempDirs, tempDir } from './helpers/setup.js';

afterEach(() => removeTempDirs());

/** Every JobState once: the compiler fails here when the store's type gains a state the table lacks. */
const ALL_STATES: Record<JobState, true> = { running: true, paused: true, finished: true, cancelled: true, aborted: true };

describe('job lifecycle table', () => {
  it('is sound: every state reachable, no dead ends, terminal states final', () => {
    expect(lifecycleProblems()).toEqual([]);
  });

  it('covers exactly the job states the store knows, and reaches each from the initial one', () => {
    expect([...JOB_LIFECYCLE.states].sort()).toEqual(Object.keys(ALL_STATES).sort());
    const reached = new Set([JOB_LIFECYCLE.initial, ...jobTransitions().map((t) => t.to)]);
    expect([...reached].sort()).toEqual([...JOB_LIFECYCLE.states].sort());
  });

  it('finished, cancelled and aborted are terminal: no event moves them', () => {
    expect([...JOB_LIFECYCLE.terminal].sort()).toEqual(['aborted', 'cancelled', 'finished']);
    for (const s of JOB_LIFECYCLE.terminal) {
      for (const e of JOB_LIFECYCLE.outcomes) expect(canMove(s, e), `${s} on ${e}`).toBe(false);
    }
  });

  // The rows the server relies on, one per line: (from, event) → to, or null for an illegal move.
  const cases: Array<[JobState, JobEvent, JobState | null]> = [
    ['running', 'pause', 'paused'],
    ['running', 'resume', null],
    ['running', 'cancel', 'cancelled'],
    ['running', 'all-done', 'finished'],
    ['running', 'failure-threshold', 'aborted'],
    ['paused', 'pause', null],
    ['paused', 'resume', 'running'],
    ['paused', 'cancel', 'cancelled'],
    ['paused', 'all-done', null],
    ['paused', 'failure-threshold', null],
    ['finished', 'cancel', null],
    ['cancelled', 'resume', null],
    ['aborted', 'pause', null],
  ];
  it.each(cases)('%s on %s → %s', (from, event, to) => {
    if (to === null) {
      expect(canMove(from, event)).toBe(false);
      let caught: unknown;
      try {
        nextJobState(from, event);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(IllegalJobTransition);
      expect(caught).toMatchObject({ from, outcome: event });
    } else {
      expect(canMove(from, event)).toBe(true);
      expect(nextJobState(from, event)).toBe(to);
    }
  });

  it('every (state, event) pair without a row is an illegal move', () => {
    for (const from of JOB_LIFECYCLE.states) {
      for (const event of JOB_LIFECYCLE.outcomes) {
        if (JOB_LIFECYCLE.rows[from][event] !== undefined) continue;
        expect(() => nextJobState(from, event), `${from} on ${event}`).toThrow(IllegalJobTransition);
      }
    }
  });

  it('names the states a user move is allowed in (the API answers SERVER_JOB_STATE otherwise)', () => {
    expect(statesAllowing('pause')).toEqual(['running']);
    expect(statesAllowing('resume')).toEqual(['paused']);
    expect(statesAllowing('cancel')).toEqual(['running', 'paused']);
  });

  it('a table with a dead end, an unreachable state or a moving terminal state is reported', () => {
    const deadEnd: JobLifecycleTable = { ...JOB_LIFECYCLE, rows: { ...JOB_LIFECYCLE.rows, paused: { resume: 'paused' } } };
    expect(lifecycleProblems(deadEnd)).toContain('paused is a dead end (no path to finished or cancelled or aborted)');
    const unreachable: JobLifecycleTable = { ...JOB_LIFECYCLE, rows: { ...JOB_LIFECYCLE.rows, running: { cancel: 'cancelled' } } };
    expect(lifecycleProblems(unreachable)).toEqual(
      expect.arrayContaining(['paused is not reachable from running', 'finished is not reachable from running']),
    );
    const undead: JobLifecycleTable = { ...JOB_LIFECYCLE, rows: { ...JOB_LIFECYCLE.rows, aborted: { resume: 'running' } } };
    expect(lifecycleProblems(undead)).toContain('terminal state aborted has transitions');
  });
});

describe('docs/job-lifecycle.md', () => {
  it('is in sync with the table (regenerate: npm run generate -w server-stub)', () => {
    expect(readFileSync(new URL('../../docs/job-lifecycle.md', import.meta.url), 'utf8')).toBe(renderJobLifecycleDoc());
  });

  it('draws every row of the table', () => {
    const diagram = jobLifecycleMermaid();
    for (const t of jobTransitions()) expect(diagram).toContain(`${t.from} --> ${t.to}: ${t.event}`);
  });
});

describe('job state changes in the store', () => {
  function storeWithJob(state: JobState): { store: Store; outcomes: JobOutcomes; jobId: number } {
    const store = Store.open(tempDir());
    store.stmt('INSERT INTO accounts (id, uuid, name, created_at) VALUES (1, \'a1\', \'a\', 0)').run();
    const jobId = insertJob(store, {
      uuid: 'j1',
      accountId: 1,
      name: 'job',
      packetId: null,
      firmwareVersion: '2.0.0',
      target: JSON.stringify({ all: true, deviceIds: [], groupIds: [], deviceUuids: [], groupUuids: [] }),
      targetSummary: JSON.stringify({ all: true, groupUuids: [], deviceCount: 0 }),
      options: JSON.stringify(normalizeOptions(undefined, 0)),
      state,
      createdBy: null,
      system: false,
      createdAt: 0,
    });
    return { store, outcomes: new JobOutcomes(store, new Metrics(), pino({ level: 'silent' })), jobId };
  }

  it('moves a job along a row and records when it ended', () => {
    const { store, outcomes, jobId } = storeWithJob('running');
    try {
      expect(outcomes.move(jobById(store, jobId)!, 'pause')).toMatchObject({ state: 'paused' });
      expect(jobById(store, jobId)).toMatchObject({ state: 'paused', finished_at: null });
      expect(outcomes.move(jobById(store, jobId)!, 'cancel', { finishedAt: 42 })).toMatchObject({ state: 'cancelled' });
      expect(jobById(store, jobId)).toMatchObject({ state: 'cancelled', finished_at: 42 });
    } finally {
      store.close();
    }
  });

  it('throws IllegalJobTransition for a move without a row, and leaves the job as it was', () => {
    const { store, outcomes, jobId } = storeWithJob('finished');
    try {
      expect(() => outcomes.move(jobById(store, jobId)!, 'cancel', { finishedAt: 1 })).toThrow(IllegalJobTransition);
      expect(jobById(store, jobId)!.state).toBe('finished');
    } finally {
      store.close();
    }
  });

  it('a move from a state the store no longer holds (another process moved the job first) changes nothing', () => {
    const { store, outcomes, jobId } = storeWithJob('running');
    try {
      const stale = jobById(store, jobId)!;
      expect(outcomes.move(stale, 'failure-threshold', { finishedAt: 5, abortReason: 'too many failures' })).toMatchObject({ state: 'aborted' });
      expect(outcomes.move(stale, 'all-done', { finishedAt: 6 })).toBeUndefined();
      expect(jobById(store, jobId)).toMatchObject({ state: 'aborted', finished_at: 5, abort_reason: 'too many failures' });
    } finally {
      store.close();
    }
  });
});

describe('every job state change goes through the lifecycle table', () => {
  const src = fileURLToPath(new URL('../src', import.meta.url));
  const files = (readdirSync(src, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts'));
  const read = (f: string) => readFileSync(join(src, f), 'utf8');

  it('only setJobState writes jobs.state, and only JobOutcomes.move calls it', () => {
    const writers = files.filter((f) => /UPDATE jobs SET[^`']*\bstate\s*=/.test(read(f)));
    expect(writers).toEqual([join('store', 'jobs.ts')]);
    const callers = files.filter((f) => f !== join('store', 'jobs.ts') && read(f).includes('setJobState('));
    expect(callers).toEqual([join('jobs', 'outcomes.ts')]);
    expect(read(join('jobs', 'outcomes.ts')).match(/setJobState\(/g)).toHaveLength(1);
  });
});
