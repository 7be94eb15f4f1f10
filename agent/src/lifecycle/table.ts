import { AgentError } from '../errors.js';

/**
 * A lifecycle as one explicit table (state, outcome) → next state. A state handler only reports an
 * outcome from the table's short fixed list and never picks its successor; a (state, outcome) pair
 * without a row is a bug: `nextState` throws AGENT_NO_TRANSITION and the runner stops.
 */
export interface TransitionTable<S extends string, O extends string> {
  readonly name: string;
  readonly states: readonly S[];
  readonly outcomes: readonly O[];
  readonly initial: S;
  readonly terminal: readonly S[];
  readonly rows: { readonly [K in S]: { readonly [P in O]?: S } };
  /** One line per state, for the generated documentation. */
  readonly describe: { readonly [K in S]: string };
}

export function nextState<S extends string, O extends string>(table: TransitionTable<S, O>, state: S, outcome: O): S {
  const next = table.rows[state]?.[outcome];
  if (next === undefined) {
    throw new AgentError('AGENT_NO_TRANSITION', `${table.name}: no transition from "${state}" on "${outcome}"`);
  }
  return next;
}

/** Every (from, outcome, to) row, in table order. */
export function transitions<S extends string, O extends string>(
  table: TransitionTable<S, O>,
): { from: S; outcome: O; to: S }[] {
  const out: { from: S; outcome: O; to: S }[] = [];
  for (const from of table.states) {
    const row = table.rows[from];
    for (const outcome of table.outcomes) {
      const to = row[outcome];
      if (to !== undefined) out.push({ from, outcome, to });
    }
  }
  return out;
}

/**
 * Structural problems of a table: states not reachable from the initial state, non-terminal states
 * with no way to a terminal state (dead ends or closed loops), terminal states with rows, rows that
 * name unknown states. Empty when the table is sound.
 */
export function tableProblems<S extends string, O extends string>(table: TransitionTable<S, O>): string[] {
  const problems: string[] = [];
  const known = new Set<string>(table.states);
  const edges = transitions(table);
  for (const e of edges) if (!known.has(e.to)) problems.push(`${e.from} --${e.outcome}--> unknown state ${e.to}`);
  const reachable = new Set<S>([table.initial]);
  for (let grew = true; grew;) {
    grew = false;
    for (const e of edges) {
      if (reachable.has(e.from) && !reachable.has(e.to)) {
        reachable.add(e.to);
        grew = true;
      }
    }
  }
  for (const s of table.states) if (!reachable.has(s)) problems.push(`${s} is not reachable from ${table.initial}`);
  const reachesEnd = new Set<S>(table.terminal);
  for (let grew = true; grew;) {
    grew = false;
    for (const e of edges) {
      if (reachesEnd.has(e.to) && !reachesEnd.has(e.from)) {
        reachesEnd.add(e.from);
        grew = true;
      }
    }
  }
  for (const s of table.states) {
    if (!reachesEnd.has(s)) problems.push(`${s} is a dead end (no path to ${table.terminal.join(' or ')})`);
    const isTerminal = table.terminal.includes(s);
    const rowCount = Object.keys(table.rows[s] ?? {}).length;
    if (isTerminal && rowCount > 0) problems.push(`terminal state ${s} has transitions`);
    if (!isTerminal && rowCount === 0) problems.push(`${s} has no transitions`);
  }
  return problems;
}
