import { describe, expect, it } from 'vitest';
import { lookupTransition, mermaidDiagram, rowsMarkdown, tableProblems, type TransitionTable, transitions } from '../src/index.js';

type S = 'idle' | 'busy-now' | 'done';
type O = 'start' | 'finish';
const TABLE: TransitionTable<S, O> = {
  name: 'example',
  states: ['idle', 'busy-now', 'done'],
  outcomes: ['start', 'finish'],
  initial: 'idle',
  terminal: ['done'],
  rows: { idle: { start: 'busy-now' }, 'busy-now': { finish: 'done' }, done: {} },
  describe: { idle: 'waits', 'busy-now': 'works', done: 'finished' },
};

describe('transition tables', () => {
  it('looks up a row and answers undefined for a pair without one', () => {
    expect(lookupTransition(TABLE, 'idle', 'start')).toBe('busy-now');
    expect(lookupTransition(TABLE, 'idle', 'finish')).toBeUndefined();
    expect(transitions(TABLE)).toEqual([
      { from: 'idle', outcome: 'start', to: 'busy-now' },
      { from: 'busy-now', outcome: 'finish', to: 'done' },
    ]);
  });

  it('finds no problem in a sound table and each kind of problem in broken ones', () => {
    expect(tableProblems(TABLE)).toEqual([]);
    expect(tableProblems({ ...TABLE, rows: { ...TABLE.rows, idle: { finish: 'done' } } })).toEqual([
      'busy-now is not reachable from idle',
    ]);
    expect(tableProblems({ ...TABLE, rows: { ...TABLE.rows, 'busy-now': { finish: 'busy-now' } } })).toEqual([
      'done is not reachable from idle',
      'idle is a dead end (no path to done)',
      'busy-now is a dead end (no path to done)',
    ]);
    expect(tableProblems({ ...TABLE, rows: { ...TABLE.rows, done: { start: 'idle' } } })).toContain('terminal state done has transitions');
    expect(tableProblems({ ...TABLE, rows: { ...TABLE.rows, idle: { start: 'nowhere' as S } } })).toContain(
      'idle --start--> unknown state nowhere',
    );
  });

  it('renders a Mermaid diagram and a Markdown table with an optional extra column', () => {
    expect(mermaidDiagram(TABLE)).toBe(
      [
        'stateDiagram-v2',
        '  state "busy-now" as busy_now',
        '  [*] --> idle',
        '  idle --> busy_now: start',
        '  busy_now --> done: finish',
        '  done --> [*]',
      ].join('\n'),
    );
    expect(rowsMarkdown(TABLE, { outcomeWord: 'Event', extra: { heading: 'Busy', cell: (s) => (s === 'busy-now' ? 'yes' : 'no') } })).toBe(
      [
        '| State | Meaning | Busy | Event → next state |',
        '| --- | --- | --- | --- |',
        '| `idle` | waits | no | `start` → `busy-now` |',
        '| `busy-now` | works | yes | `finish` → `done` |',
        '| `done` | finished | no | — (terminal) |',
      ].join('\n'),
    );
  });
});
