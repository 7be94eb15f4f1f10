/**
 * V8 flags the cluster primary starts its workers with, unless the operator named the same flag
 * (on the primary's command line, e.g. `node --initial-old-space-size=512 cli.js serve`, or in
 * NODE_OPTIONS): the operator's value wins.
 *
 * `--initial-old-space-size`: a worker's heap grows with its sessions (about 5 KB of heap each, so
 * 17,000 sessions make 90 MB), and V8 sizes the old generation from what survived the last full
 * collection. Starting from a few MB it ran a full (mark-compact) collection every 2–3 s while a
 * fleet connected, each a main-thread pause of 20–450 ms on a loaded 2-core machine, and the
 * hellos that arrived meanwhile waited for it: at 20,000 devices on 2 workers, 40 per worker
 * during the ramp. Starting the old generation at 384 MB left 12 (channel-scale with `--trace-gc`,
 * BENCHMARKS.md). It reserves nothing: the heap still takes only what it holds.
 */
export const WORKER_V8_FLAGS: readonly string[] = ['--initial-old-space-size=384'];

/** `--max_old_space_size=1` and `--max-old-space-size=1` name the same flag. */
const flagName = (arg: string) => arg.split('=')[0]!.replaceAll('_', '-');

/**
 * The node arguments of a worker: the primary's own (`process.execArgv`, which node:cluster gives
 * its workers by default) and those of `defaults` that neither they nor NODE_OPTIONS name.
 */
export function workerExecArgv(own: readonly string[], nodeOptions: string | undefined, defaults: readonly string[] = WORKER_V8_FLAGS): string[] {
  const named = new Set([...own, ...(nodeOptions ?? '').split(/\s+/).filter(Boolean)].map(flagName));
  return [...defaults.filter((d) => !named.has(flagName(d))), ...own];
}
