/**
 * A state machine as one explicit table (state, outcome) → next state, the shape of the agent's
 * lifecycle tables (the server does not import the agent, so it keeps this small copy). The server's
 * two machines use it: a control-channel session (`channel/session-table.ts`) and a job as a whole
 * (`jobs/job-lifecycle.ts`). A move without a row is a bug: `nextState` throws {@link IllegalTransition}.
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

/** A (state, outcome) pair the table has no row for: a bug in the caller, never a peer's doing. */
export class IllegalTransition extends Error {
  constructor(
    readonly table: string,
    readonly from: string,
    readonly outcome: string,
  ) {
    super(`${table}: no transition from "${from}" on "${outcome}"`);
    this.name = 'IllegalTransition';
  }
}

export function nextState<S extends string, O extends string>(table: TransitionTable<S, O>, state: S, outcome: O): S {
  const next = table.rows[state]?.[outcome];
  if (next === undefined) throw new IllegalTransition(table.name, state, outcome);
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
 * with no way to a terminal state, terminal states with rows, rows naming unknown states. Empty
 * when the table is sound.
 */
export function tableProblems<S extends string, O extends string>(table: TransitionTable<S, O>): string[] {
  const problems: string[] = [];
  const known = new Set<string>(table.states);
  const edges = transitions(table);
  for (const e of edges) if (!known.has(e.to)) problems.push(`${e.from} --${e.outcome}--> unknown state ${e.to}`);
  const closure = (start: Iterable<S>, step: (e: { from: S; to: S }) => [S, S]): Set<S> => {
    const seen = new Set<S>(start);
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
    const isTerminal = table.terminal.includes(s);
    const rowCount = Object.keys(table.rows[s] ?? {}).length;
    if (isTerminal && rowCount > 0) problems.push(`terminal state ${s} has transitions`);
    if (!isTerminal && rowCount === 0) problems.push(`${s} has no transitions`);
  }
  return problems;
}

const id = (state: string) => state.replace(/-/g, '_');

/** A Mermaid state diagram of a transition table. */
export function mermaidDiagram<S extends string, O extends string>(table: TransitionTable<S, O>): string {
  const lines = ['stateDiagram-v2'];
  for (const s of table.states) if (s.includes('-')) lines.push(`  state "${s}" as ${id(s)}`);
  lines.push(`  [*] --> ${id(table.initial)}`);
  for (const e of transitions(table)) lines.push(`  ${id(e.from)} --> ${id(e.to)}: ${e.outcome}`);
  for (const s of table.terminal) lines.push(`  ${id(s)} --> [*]`);
  return lines.join('\n');
}

/** The table as Markdown: state, meaning, outcome → next state (`outcomeWord` names the column). */
export function rowsMarkdown<S extends string, O extends string>(table: TransitionTable<S, O>, outcomeWord = 'Outcome'): string {
  const rows = table.states.map((s) => {
    const out = Object.entries(table.rows[s] as Record<string, string>)
      .map(([o, to]) => `\`${o}\` → \`${to}\``)
      .join(', ');
    return `| \`${s}\` | ${table.describe[s]} | ${out || '— (terminal)'} |`;
  });
  return [`| State | Meaning | ${outcomeWord} → next state |`, '| --- | --- | --- |', ...rows].join('\n');
}
