import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderSessionDoc } from '../src/channel/session-doc.js';
import { SESSION_TABLE, type SessionOutcome, type SessionState } from '../src/channel/session-table.js';
import {
  IllegalTransition,
  mermaidDiagram,
  nextState,
  tableProblems,
  type TransitionTable,
  transitions,
} from '../src/state-table.js';

describe('channel session transition table', () => {
  const table = SESSION_TABLE;

  it('is sound: every state reachable, no dead ends, closed is terminal', () => {
    expect(tableProblems(table)).toEqual([]);
    expect(table.terminal).toEqual(['closed']);
    expect(Object.keys(table.rows.closed)).toEqual([]);
  });

  it('reaches every state from awaiting-hello', () => {
    const reached = new Set([table.initial, ...transitions(table).map((t) => t.to)]);
    expect([...reached].sort()).toEqual([...table.states].sort());
  });

  it('only uses declared outcomes and states', () => {
    for (const t of transitions(table)) {
      expect(table.outcomes).toContain(t.outcome);
      expect(table.states).toContain(t.to);
    }
  });

  it('every state but closed ends when the transport ends', () => {
    for (const s of table.states) {
      if (s === 'closed') continue;
      expect(nextState(table, s, 'ended'), s).toBe('closed');
    }
  });

  it.each<[SessionState, SessionOutcome]>([
    ['closed', 'ended'],
    ['closed', 'hello'],
    ['awaiting-hello', 'admitted'],
    ['open', 'hello'],
    ['replaced', 'close'],
    ['refusing', 'admitted'],
    ['admitting', 'close'],
  ])('rejects the illegal move %s --%s-->', (from, outcome) => {
    expect(() => nextState(table, from, outcome)).toThrow(IllegalTransition);
  });

  it('only open and closing sessions are ever replaced (a device is replaced once admitted)', () => {
    const from = transitions(table).filter((t) => t.outcome === 'replaced').map((t) => t.from);
    expect(from.sort()).toEqual(['closing', 'open']);
  });

  it('a table with a dead end or an unreachable state is reported', () => {
    const broken = { ...table, rows: { ...table.rows, [table.initial]: {} } } as TransitionTable<string, string>;
    expect(tableProblems(broken).length).toBeGreaterThan(0);
    const terminalWithRow = { ...table, rows: { ...table.rows, closed: { hello: 'open' } } } as TransitionTable<string, string>;
    expect(tableProblems(terminalWithRow)).toContain('terminal state closed has transitions');
  });
});

describe('docs/channel-session.md', () => {
  it('is in sync with the table (regenerate: npm run generate -w server-stub)', () => {
    expect(readFileSync(new URL('../../docs/channel-session.md', import.meta.url), 'utf8')).toBe(renderSessionDoc());
  });

  it('draws every row of the table', () => {
    const diagram = mermaidDiagram(SESSION_TABLE);
    for (const t of transitions(SESSION_TABLE)) {
      expect(diagram).toContain(`${t.from.replace(/-/g, '_')} --> ${t.to.replace(/-/g, '_')}: ${t.outcome}`);
    }
  });
});
