/**
 * A state machine as one explicit table of (state, outcome) → next state, checked as data. The
 * agent's session and update lifecycles and the server's control-channel session and job lifecycle
 * are all such tables: a handler reports an outcome from the table's fixed list and never picks its
 * successor, and a (state, outcome) pair without a row is a bug in the caller. Each program wraps
 * {@link lookupTransition} in its own `nextState` that throws its own error.
 */
export interface TransitionTable<S extends string, O extends string> {
  /** Names the machine in errors and documentation. */
  readonly name: string;
  readonly states: readonly S[];
  readonly outcomes: readonly O[];
  readonly initial: S;
  readonly terminal: readonly S[];
  readonly rows: { readonly [K in S]: { readonly [P in O]?: S } };
  /** One line per state, for the generated documentation. */
  readonly describe: { readonly [K in S]: string };
}

/** The state after `outcome` in `state`, or `undefined` when the table has no such row. */
export function lookupTransition<S extends string, O extends string>(
  table: TransitionTable<S, O>,
  state: S,
  outcome: O,
): S | undefined {
  return table.rows[state]?.[outcome];
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
  const closure = (start: Iterable<S>, forward: boolean): Set<S> => {
    const seen = new Set<S>(start);
    for (let grew = true; grew;) {
      grew = false;
      for (const e of edges) {
        const [a, b] = forward ? [e.from, e.to] : [e.to, e.from];
        if (seen.has(a) && !seen.has(b)) {
          seen.add(b);
          grew = true;
        }
      }
    }
    return seen;
  };
  const reachable = closure([table.initial], true);
  for (const s of table.states) if (!reachable.has(s)) problems.push(`${s} is not reachable from ${table.initial}`);
  const reachesEnd = closure(table.terminal, false);
  for (const s of table.states) {
    if (!reachesEnd.has(s)) problems.push(`${s} is a dead end (no path to ${table.terminal.join(' or ')})`);
    const isTerminal = table.terminal.includes(s);
    const rowCount = Object.keys(table.rows[s] ?? {}).length;
    if (isTerminal && rowCount > 0) problems.push(`terminal state ${s} has transitions`);
    if (!isTerminal && rowCount === 0) problems.push(`${s} has no transitions`);
  }
  return problems;
}

const mermaidId = (state: string) => state.replace(/-/g, '_');

/** A Mermaid state diagram of a transition table. */
export function mermaidDiagram<S extends string, O extends string>(table: TransitionTable<S, O>): string {
  const lines = ['stateDiagram-v2'];
  for (const s of table.states) if (s.includes('-')) lines.push(`  state "${s}" as ${mermaidId(s)}`);
  lines.push(`  [*] --> ${mermaidId(table.initial)}`);
  for (const e of transitions(table)) lines.push(`  ${mermaidId(e.from)} --> ${mermaidId(e.to)}: ${e.outcome}`);
  for (const s of table.terminal) lines.push(`  ${mermaidId(s)} --> [*]`);
  return lines.join('\n');
}

/** Options of {@link rowsMarkdown}. */
export interface RowsMarkdownOptions<S extends string> {
  /** What the table's outcomes are called in the last column's heading. Default `Outcome`. */
  readonly outcomeWord?: string;
  /** One more column before the last one: its heading and a cell per state. */
  readonly extra?: { readonly heading: string; readonly cell: (state: S) => string };
}

/** The table as Markdown: state, meaning, [extra column,] outcome → next state. */
export function rowsMarkdown<S extends string, O extends string>(
  table: TransitionTable<S, O>,
  options: RowsMarkdownOptions<S> = {},
): string {
  const { outcomeWord = 'Outcome', extra } = options;
  const headings = ['State', 'Meaning', ...(extra ? [extra.heading] : []), `${outcomeWord} → next state`];
  const rows = table.states.map((s) => {
    const out = Object.entries(table.rows[s] as Record<string, string>)
      .map(([o, to]) => `\`${o}\` → \`${to}\``)
      .join(', ');
    const cells = [`\`${s}\``, table.describe[s], ...(extra ? [extra.cell(s)] : []), out || '— (terminal)'];
    return `| ${cells.join(' | ')} |`;
  });
  return [`| ${headings.join(' | ')} |`, `| ${headings.map(() => '---').join(' | ')} |`, ...rows].join('\n');
}
