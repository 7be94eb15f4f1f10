import { SimError } from './errors.js';
import { type FleetHandle, pollStats, startFleet, type StartFleetOptions } from './fleet.js';
import { buildReport, type FleetReport } from './metrics.js';
import { mergeReports } from './report-merge.js';
import { WHOLE_FLEET } from './shard.js';
import { type FleetStats, mergeFleetStats } from './stats.js';

/** A fleet run as N shards side by side, driven as one fleet. */
export interface ShardedFleetHandle extends FleetHandle {
  /** The shards' own handles (shard k/N at k − 1). */
  readonly shards: readonly FleetHandle[];
  /**
   * After `stop`: each shard's report (as `fleet-sim run --shard k/N` writes it) and their merge
   * by `mergeReports` (what `fleet-sim report merge` writes), from `startedAt` (ms since the epoch).
   */
  reports(startedAt: number): { shards: FleetReport[]; merged: FleetReport };
}

/**
 * Starts the fleet as `count` shards in this machine, each its own coordinator and processes
 * (`options.processes` per shard), as `fleet-sim run --shard k/N` would on N machines, and drives
 * them as one fleet: figures merged, details of every router, faults, marks and stop sent to every
 * shard. The shards share one ramp (each dials its routers at their slots in the fleet's).
 */
export async function startShardedFleet(options: Omit<StartFleetOptions, 'shard'>, count: number): Promise<ShardedFleetHandle> {
  if (!Number.isInteger(count) || count < 1) throw new SimError('SIM_SHARD_INVALID', `shards must be an integer ≥ 1, not ${count}`);
  const started = await Promise.allSettled(Array.from({ length: count }, (_, i) => startFleet({ ...options, shard: { index: i + 1, count } })));
  const shards = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await Promise.all(shards.map((s) => s.stop({ graceMs: 1000 }).catch(() => undefined)));
    throw failed.reason;
  }
  const stats = () => mergeFleetStats(shards.map((s) => s.stats()));
  let finals: FleetStats[] | undefined;
  let stopped: Promise<FleetStats> | undefined;
  return {
    shards,
    processes: shards.reduce((n, s) => n + s.processes, 0),
    devices: shards.reduce((n, s) => n + s.devices, 0),
    shard: WHOLE_FLEET,
    fleet: shards[0]!.fleet,
    baseline: shards.flatMap((s) => s.baseline),
    stats,
    waitFor(predicate, timeoutMs = 120_000) {
      return pollStats(stats, predicate, timeoutMs, () => stopped !== undefined);
    },
    async details() {
      return (await Promise.all(shards.map((s) => s.details()))).flat().sort((a, b) => a.index - b.index);
    },
    cutConnections(fraction, seed = 1) {
      shards.forEach((s, k) => s.cutConnections(fraction, seed * 7919 + k));
    },
    restartDevices(fraction, o = {}) {
      shards.forEach((s, k) => s.restartDevices(fraction, { ...o, seed: (o.seed ?? 1) * 7919 + k }));
    },
    jobCreated(at = Date.now()) {
      for (const s of shards) s.jobCreated(at);
    },
    mark(at = Date.now()) {
      for (const s of shards) s.mark(at);
    },
    stop(o = {}) {
      stopped ??= Promise.all(shards.map((s) => s.stop(o))).then((list) => {
        finals = list;
        return mergeFleetStats(list);
      });
      return stopped;
    },
    reports(startedAt) {
      if (!finals) throw new Error('reports: stop the fleet first');
      const list = finals.map((s, k) => buildReport(s, startedAt, { shard: shards[k]!.shard, fleet: shards[k]!.fleet }));
      return { shards: list, merged: mergeReports(list.map((report) => ({ report }))) };
    },
  };
}
