import type { JobState } from '../store/jobs.js';

/**
 * The states of a job (not of its executions: those are protocol's job-state table) as one table
 * of (state, event) → next state. Every change of a job's state goes through `nextJobState`; a
 * (state, event) pair without a row is a bug and throws `IllegalJobTransition`. Where a user asks
 * for a move (pause, resume, cancel), the API checks `canMove` first and answers SERVER_JOB_STATE.
 * docs/job-lifecycle.md is generated from this table (`npm run generate -w server-stub`).
 */
export type JobEvent = 'pause' | 'resume' | 'cancel' | 'all-done' | 'failure-threshold';

export interface JobLifecycleTable {
  readonly initial: JobState;
  readonly states: readonly JobState[];
  readonly events: readonly JobEvent[];
  readonly terminal: readonly JobState[];
  readonly rows: { readonly [S in JobState]: { readonly [E in JobEvent]?: JobState } };
  /** One line per state, for the documentation. */
  readonly describe: { readonly [S in JobState]: string };
  /** One line per event: who or what causes it. */
  readonly explain: { readonly [E in JobEvent]: string };
}

export const JOB_LIFECYCLE: JobLifecycleTable = {
  initial: 'running',
  states: ['running', 'paused', 'finished', 'cancelled', 'aborted'],
  events: ['pause', 'resume', 'cancel', 'all-done', 'failure-threshold'],
  terminal: ['finished', 'cancelled', 'aborted'],
  rows: {
    running: { pause: 'paused', cancel: 'cancelled', 'all-done': 'finished', 'failure-threshold': 'aborted' },
    paused: { resume: 'running', cancel: 'cancelled' },
    finished: {},
    cancelled: {},
    aborted: {},
  },
  describe: {
    running: 'New executions are claimed within the rollout limits.',
    paused: 'No new executions; those in flight go on.',
    finished: 'Every device has its final result.',
    cancelled: 'No new executions; executions before the commit point are cancelled.',
    aborted: 'Failures passed the abort threshold: no new executions.',
  },
  explain: {
    pause: 'user: `POST /api/jobs/{uuid}/pause`',
    resume: 'user: `POST /api/jobs/{uuid}/resume`',
    cancel: 'user: `POST /api/jobs/{uuid}/cancel`',
    'all-done': 'no device pending or active (never for a dynamic job)',
    'failure-threshold': 'failed devices passed `abort.failurePercent` and `abort.minFailures`',
  },
};

/** A job state change that the table does not allow: a bug in the caller. */
export class IllegalJobTransition extends Error {
  override readonly name = 'IllegalJobTransition';

  constructor(
    readonly from: JobState,
    readonly event: JobEvent,
  ) {
    super(`job lifecycle: no transition from "${from}" on "${event}"`);
  }
}

export function canMove(from: JobState, event: JobEvent, table: JobLifecycleTable = JOB_LIFECYCLE): boolean {
  return table.rows[from][event] !== undefined;
}

/** The state after `event`; throws IllegalJobTransition when the table has no such row. */
export function nextJobState(from: JobState, event: JobEvent, table: JobLifecycleTable = JOB_LIFECYCLE): JobState {
  const to = table.rows[from][event];
  if (to === undefined) throw new IllegalJobTransition(from, event);
  return to;
}

/** The states in which `event` is allowed. */
export function statesAllowing(event: JobEvent, table: JobLifecycleTable = JOB_LIFECYCLE): JobState[] {
  return table.states.filter((s) => canMove(s, event, table));
}

/** Every (from, event, to) row, in table order. */
export function jobTransitions(table: JobLifecycleTable = JOB_LIFECYCLE): { from: JobState; event: JobEvent; to: JobState }[] {
  const out: { from: JobState; event: JobEvent; to: JobState }[] = [];
  for (const from of table.states) {
    for (const event of table.events) {
      const to = table.rows[from][event];
      if (to !== undefined) out.push({ from, event, to });
    }
  }
  return out;
}

/**
 * Structural problems of the table: unknown target states, states not reachable from the initial
 * one, states with no way to a terminal state, terminal states with rows. Empty when sound.
 */
export function lifecycleProblems(table: JobLifecycleTable = JOB_LIFECYCLE): string[] {
  const problems: string[] = [];
  const edges = jobTransitions(table);
  for (const e of edges) if (!table.states.includes(e.to)) problems.push(`${e.from} --${e.event}--> unknown state ${e.to}`);
  const closure = (start: readonly JobState[], step: (e: (typeof edges)[number]) => [JobState, JobState]) => {
    const seen = new Set<JobState>(start);
    for (let grew = true; grew;) {
      grew = false;
      for (const e of edges) {
        const [a, b] = step(e);
        if (seen.has(a) && !seen.has(b)) {
          seen.add(b);
          grew = true;
        }
      }
    }
    return seen;
  };
  const reachable = closure([table.initial], (e) => [e.from, e.to]);
  const reachesEnd = closure(table.terminal, (e) => [e.to, e.from]);
  for (const s of table.states) {
    if (!reachable.has(s)) problems.push(`${s} is not reachable from ${table.initial}`);
    if (!reachesEnd.has(s)) problems.push(`${s} is a dead end (no path to ${table.terminal.join(' or ')})`);
    const rows = Object.keys(table.rows[s]).length;
    if (table.terminal.includes(s) && rows > 0) problems.push(`terminal state ${s} has transitions`);
    if (!table.terminal.includes(s) && rows === 0) problems.push(`${s} has no transitions`);
  }
  return problems;
}

const id = (s: string) => s.replace(/-/g, '_');

/** A Mermaid state diagram of the table. */
export function jobLifecycleMermaid(table: JobLifecycleTable = JOB_LIFECYCLE): string {
  const lines = ['stateDiagram-v2', `  [*] --> ${id(table.initial)}`];
  for (const e of jobTransitions(table)) lines.push(`  ${id(e.from)} --> ${id(e.to)}: ${e.event}`);
  for (const s of table.terminal) lines.push(`  ${id(s)} --> [*]`);
  return lines.join('\n');
}

/** The whole of docs/job-lifecycle.md, generated from the table. */
export function renderJobLifecycleDoc(table: JobLifecycleTable = JOB_LIFECYCLE): string {
  const states = table.states.map((s) => {
    const out = table.events
      .filter((e) => table.rows[s][e] !== undefined)
      .map((e) => `\`${e}\` → \`${table.rows[s][e]}\``)
      .join(', ');
    return `| \`${s}\` | ${table.describe[s]} | ${out || '— (terminal)'} |`;
  });
  const events = table.events.map((e) => `| \`${e}\` | ${table.explain[e]} |`);
  return `<!-- Generated by \`npm run generate -w server-stub\` from server-stub/src/jobs/job-lifecycle.ts. Do not edit. -->

# Job lifecycle (server)

The states of a job as a whole, one table of (state, event) → next state
(\`server-stub/src/jobs/job-lifecycle.ts\`). Every change of a job's state goes through it; a move
without a row is a bug (\`IllegalJobTransition\`). A user's pause, resume or cancel that the job's
state does not allow is answered with \`SERVER_JOB_STATE\` (409). The states of one device's
execution of a job are a separate table, shared with the agent (docs/protocol.md).

${'```mermaid'}
${jobLifecycleMermaid(table)}
${'```'}

| State | Meaning | Event → next state |
| --- | --- | --- |
${states.join('\n')}

| Event | Cause |
| --- | --- |
${events.join('\n')}
`;
}
