import { readdirSync, readFileSync } from 'node:fs';

/** Percentiles of a sample (nearest rank), rounded to 0.1. */
export interface Percentiles {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export function percentiles(samples: readonly number[]): Percentiles {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! : 0);
  const r = (x: number) => Math.round(x * 10) / 10;
  return { count: sorted.length, p50: r(at(50)), p90: r(at(90)), p99: r(at(99)), max: r(sorted.at(-1) ?? 0) };
}

/** `n` source addresses 127.0.0.1 … 127.0.0.n (loopback only). */
export function loopbackSources(n: number): string[] {
  if (!Number.isInteger(n) || n < 1 || n > 250) throw new RangeError('source address count must be 1–250');
  return Array.from({ length: n }, (_, i) => `127.0.0.${i + 1}`);
}

/**
 * Resident memory of a process and all its descendants (cluster workers), bytes, from /proc
 * (Linux); 0 where /proc is not available.
 */
export function processTreeRss(pid: number): number {
  let total = 0;
  try {
    total = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const children = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      for (const child of children ? children.split(/\s+/) : []) total += processTreeRss(Number(child));
    }
  } catch {
    // the process is gone or /proc is not there
  }
  return total;
}
