/**
 * The node flags a cluster worker starts with: the primary's own, plus
 * `--initial-old-space-size=<workerOldSpaceMb>` unless that is 0 or the primary was started with
 * an initial size of its own (node does not take that flag from NODE_OPTIONS). A
 * `--max-old-space-size` below it, on the command line or in NODE_OPTIONS, caps it.
 *
 * Why: a worker's old generation grows with the sessions it keeps. V8 starts a full collection
 * after a growth proportional to what survived the last one, and keeps that proportion at its
 * minimum while full collections are cheap, so a worker admitting a fleet collected after every
 * 5–10 MB of growth. The initial size also sets the least growth before a collection (V8's heap
 * sizing on Node 20), so a worker keeps its sessions without collecting all the time; garbage is
 * still collected by the young generation and by V8's other triggers (external memory, such as
 * sockets' buffers, and the limit itself once reached).
 */
export function workerExecArgv(execArgv: readonly string[], nodeOptions: string | undefined, workerOldSpaceMb: number): string[] {
  if (workerOldSpaceMb <= 0 || lastValue(execArgv, 'initial') !== undefined) return [...execArgv];
  const max = lastValue([...(nodeOptions ?? '').split(/\s+/).filter(Boolean), ...execArgv], 'max');
  const size = max !== undefined && Number.isFinite(max) ? Math.min(max, workerOldSpaceMb) : workerOldSpaceMb;
  return [...execArgv, `--initial-old-space-size=${size}`];
}

/** The value of the last `--<name>-old-space-size` flag of `flags` (`=N` or `N` after it; `-` or `_`). */
function lastValue(flags: readonly string[], name: 'initial' | 'max'): number | undefined {
  const re = new RegExp(`^--${name}[-_]old[-_]space[-_]size(?:=(\\d+))?$`);
  let found: number | undefined;
  flags.forEach((f, i) => {
    const m = re.exec(f);
    if (m) found = Number(m[1] ?? flags[i + 1]);
  });
  return found;
}
