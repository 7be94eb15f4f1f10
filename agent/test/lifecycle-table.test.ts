import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isLegalJobTransition, jobStatePath } from '@router-fleet/protocol';
import { describe, expect, it } from 'vitest';
import { AgentError } from '../src/errors.js';
import { mermaidDiagram, renderLifecycleDoc } from '../src/lifecycle/mermaid.js';
import { SESSION_TABLE } from '../src/lifecycle/session-table.js';
import { nextState, tableProblems, type TransitionTable, transitions } from '../src/lifecycle/table.js';
import { CANCELLABLE_UPDATE_STATES, REPORTED_JOB_STATE, UPDATE_TABLE } from '../src/lifecycle/update-table.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

describe.each([
  ['session', SESSION_TABLE as TransitionTable<string, string>],
  ['update', UPDATE_TABLE as TransitionTable<string, string>],
])('%s transition table', (_name, table) => {
  it('is sound: every state reachable, no dead ends, terminal states final', () => {
    expect(tableProblems(table)).toEqual([]);
  });

  it('reaches every state from the initial one', () => {
    const reached = new Set([table.initial, ...transitions(table).map((t) => t.to)]);
    expect([...reached].sort()).toEqual([...table.states].sort());
  });

  it('only uses declared outcomes and states', () => {
    for (const t of transitions(table)) {
      expect(table.outcomes).toContain(t.outcome);
      expect(table.states).toContain(t.to);
    }
  });

  it('throws AGENT_NO_TRANSITION for a missing row (a bug stops the runner)', () => {
    const terminal = table.terminal[0]!;
    let caught: unknown;
    try {
      nextState(table, terminal, table.outcomes[0]!);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(AgentError);
    expect((caught as AgentError).code).toBe('AGENT_NO_TRANSITION');
  });

  it('a table with a dead end or an unreachable state is reported', () => {
    const broken = {
      ...table,
      rows: { ...table.rows, [table.initial]: {} },
    } as TransitionTable<string, string>;
    expect(tableProblems(broken).length).toBeGreaterThan(0);
  });
});

describe('update table and job states', () => {
  it('every non-terminal state can fail (the loop breaker forces "failed" through the table)', () => {
    for (const state of UPDATE_TABLE.states) {
      if (UPDATE_TABLE.terminal.includes(state)) continue;
      expect(UPDATE_TABLE.rows[state].failed, state).toBeDefined();
    }
  });

  it('a cancel aborts only before the commit point', () => {
    expect(CANCELLABLE_UPDATE_STATES).not.toContain('installing');
    for (const s of CANCELLABLE_UPDATE_STATES) expect(UPDATE_TABLE.rows[s].cancelled).toBe('done');
    for (const s of ['installing', 'rebooting', 'health-check', 'committing', 'rolling-back'] as const) {
      expect(UPDATE_TABLE.rows[s].cancelled).toBeUndefined();
    }
  });

  it('reported job states follow legal transitions along every path of the table', () => {
    for (const t of transitions(UPDATE_TABLE)) {
      const from = REPORTED_JOB_STATE[t.from] ?? 'offered';
      const to = REPORTED_JOB_STATE[t.to];
      if (!to) continue;
      let last = from;
      for (const s of jobStatePath(from, to)) {
        expect(isLegalJobTransition(last, s), `${last} → ${s} (${t.from} --${t.outcome}--> ${t.to})`).toBe(true);
        last = s;
      }
    }
  });
});

describe('docs/agent-lifecycle.md', () => {
  it('is in sync with the tables (regenerate: npx tsx agent/scripts/generate-lifecycle.ts)', () => {
    expect(readFileSync(join(root, 'docs', 'agent-lifecycle.md'), 'utf8')).toBe(renderLifecycleDoc());
  });

  it('draws every row of both tables', () => {
    for (const table of [SESSION_TABLE, UPDATE_TABLE] as TransitionTable<string, string>[]) {
      const diagram = mermaidDiagram(table);
      for (const t of transitions(table)) {
        expect(diagram).toContain(`${t.from.replace(/-/g, '_')} --> ${t.to.replace(/-/g, '_')}: ${t.outcome}`);
      }
    }
  });
});
