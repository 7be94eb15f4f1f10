import { lookupTransition, type TransitionTable } from '@router-fleet/protocol';
import { AgentError } from '../errors.js';

/**
 * The agent's lifecycles are protocol's checked transition tables (state, outcome) → next state. A
 * state handler only reports an outcome from the table's short fixed list and never picks its
 * successor; a (state, outcome) pair without a row is a bug: `nextState` throws AGENT_NO_TRANSITION
 * and the runner stops.
 */
export { tableProblems, type TransitionTable, transitions } from '@router-fleet/protocol';

export function nextState<S extends string, O extends string>(table: TransitionTable<S, O>, state: S, outcome: O): S {
  const next = lookupTransition(table, state, outcome);
  if (next === undefined) {
    throw new AgentError('AGENT_NO_TRANSITION', `${table.name}: no transition from "${state}" on "${outcome}"`);
  }
  return next;
}
