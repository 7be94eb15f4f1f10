import { readFileSync } from 'node:fs';
import { LoadtestError } from './errors.js';
import type { ScaleCounts } from './scale.js';

/** One count that differs between two scale reports. */
export interface CountDifference {
  /** e.g. `managed`, `states.rejected`. */
  name: string;
  a: number;
  b: number;
}

/** Reads the counts of a scale report (`fleet-loadtest scale --report`); LOADTEST_REPORT_INVALID when it has none. */
export function readScaleCounts(file: string): ScaleCounts {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new LoadtestError('LOADTEST_REPORT_INVALID', `cannot read ${file} as JSON: ${(err as Error).message}`);
  }
  const counts = (value as { counts?: unknown } | null)?.counts as Partial<ScaleCounts> | undefined;
  const numbers = ['devices', 'managed', 'refused', 'jobsFinished', 'jobsRolledBack', 'jobSucceeded'] as const;
  if (!counts || typeof counts !== 'object' || numbers.some((k) => typeof counts[k] !== 'number') || typeof counts.states !== 'object' || counts.states === null) {
    throw new LoadtestError('LOADTEST_REPORT_INVALID', `${file} has no counts (a report of fleet-loadtest scale written by this version)`);
  }
  return counts as ScaleCounts;
}

/**
 * The counts in which two scale runs of the same fleet differ: routers, managed, refused, jobs the
 * routers finished or rolled back, the job's succeeded executions, and routers per session state
 * (a state missing on one side counts 0). Empty when the runs ended alike, e.g. a sharded run and
 * the single run of the same fleet and licences.
 */
export function compareScaleCounts(a: ScaleCounts, b: ScaleCounts): CountDifference[] {
  const out: CountDifference[] = [];
  for (const name of ['devices', 'managed', 'refused', 'jobsFinished', 'jobsRolledBack', 'jobSucceeded'] as const) {
    if (a[name] !== b[name]) out.push({ name, a: a[name], b: b[name] });
  }
  const states = new Set([...Object.keys(a.states), ...Object.keys(b.states)]);
  for (const state of [...states].sort()) {
    const x = a.states[state] ?? 0;
    const y = b.states[state] ?? 0;
    if (x !== y) out.push({ name: `states.${state}`, a: x, b: y });
  }
  return out;
}
