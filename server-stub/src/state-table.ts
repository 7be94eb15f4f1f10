import { lookupTransition, type TransitionTable } from '@router-fleet/protocol';

/**
 * The server's state machines are protocol's checked transition tables (state, outcome) → next
 * state, as the agent's lifecycles are: a control-channel session (`channel/session-table.ts`) and a
 * job as a whole (`jobs/job-lifecycle.ts`). A move without a row is a bug: `nextState` throws
 * {@link IllegalTransition}.
 */
export { mermaidDiagram, rowsMarkdown, tableProblems, type TransitionTable, transitions } from '@router-fleet/protocol';

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
  const next = lookupTransition(table, state, outcome);
  if (next === undefined) throw new IllegalTransition(table.name, state, outcome);
  return next;
}
