import { readJsonFile } from './json-file.js';
import { SimError } from './errors.js';
import { Histogram, type SerializedHistogram } from './histogram.js';
import type { FleetReport, MergedRun } from './metrics.js';

/** A report to merge and where it came from (named in errors). */
export interface ReportInput {
  report: unknown;
  /** The file it was read from (default: its position, "report 2"). */
  file?: string;
}

export interface MergeOptions {
  /**
   * Merge even if some shards of the fleet have no report: the merged report lists them in
   * `merged.missing` and counts only the routers of the shards it has. Default false: missing
   * shards are SIM_MERGE_SHARDS_MISSING (a merged report is meant to stand for the whole fleet).
   */
  allowMissing?: boolean;
}

const isRecord = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);
const isCountMap = (v: unknown): v is Record<string, number> => isRecord(v) && Object.values(v).every((n) => typeof n === 'number');

function isSerializedHistogram(v: unknown): v is SerializedHistogram {
  if (!isRecord(v) || !Array.isArray(v['buckets'])) return false;
  const ok = (x: unknown) => typeof x === 'number' && Number.isFinite(x);
  return v['buckets'].every((b) => Array.isArray(b) && b.length === 2 && Number.isInteger(b[0]) && Number.isInteger(b[1]) && (b[1] as number) >= 0)
    && ok(v['count']) && ok(v['sum']) && ok(v['min']) && ok(v['max']);
}

/** Checks that a value is a report `mergeReports` can merge; SIM_REPORT_INVALID names what is wrong. */
export function validateReport(value: unknown, name: string): FleetReport {
  const bad = (what: string) => new SimError('SIM_REPORT_INVALID', `${name}: ${what}`);
  if (!isRecord(value)) throw bad('not a JSON object (a report of fleet-sim run, scenario or report merge)');
  const r = value;
  const fleet = r['fleet'];
  if (!isRecord(fleet) || typeof fleet['id'] !== 'string' || typeof fleet['routers'] !== 'number') {
    throw bad('no fleet identity (fleet.id): not a fleet-sim report, or written by a fleet-sim without shards');
  }
  const shard = r['shard'];
  if (!isRecord(shard) || !Number.isInteger(shard['count']) || !Array.isArray(shard['indices']) || shard['indices'].length === 0
    || !shard['indices'].every((k) => Number.isInteger(k) && (k as number) >= 1 && (k as number) <= (shard['count'] as number))) {
    throw bad('no valid shard ({ count, indices })');
  }
  const raw = r['raw'];
  if (!isRecord(raw) || !isRecord(raw['histograms']) || !Object.values(raw['histograms']).every(isSerializedHistogram)) {
    throw bad('no raw histograms (raw.histograms with buckets): percentiles alone cannot be merged exactly');
  }
  for (const key of ['devices', 'started', 'processes', 'managed', 'unmanaged', 'rejected', 'backingOff', 'reconnects']) {
    if (typeof r[key] !== 'number') throw bad(`${key} is not a number`);
  }
  for (const key of ['states', 'counters', 'errors', 'reconnectBins']) if (!isCountMap(r[key])) throw bad(`${key} is not a map of counts`);
  const memory = r['memory'];
  if (!isRecord(memory) || !Array.isArray(memory['processes']) || typeof memory['rssBytes'] !== 'number' || typeof memory['heapUsedBytes'] !== 'number') {
    throw bad('memory (processes, rssBytes, heapUsedBytes) is missing');
  }
  const cpu = r['cpu'];
  if (!isRecord(cpu) || !Array.isArray(cpu['processes']) || typeof cpu['seconds'] !== 'number' || typeof cpu['percentOfOneCore'] !== 'number') {
    throw bad('cpu (processes, seconds, percentOfOneCore) is missing');
  }
  if (typeof r['startedAt'] !== 'string' || Number.isNaN(Date.parse(r['startedAt'])) || typeof r['finishedAt'] !== 'string' || Number.isNaN(Date.parse(r['finishedAt']))) {
    throw bad('startedAt/finishedAt are not ISO times');
  }
  return value as unknown as FleetReport;
}

/** Reads and validates a report file (SIM_FILE_UNREADABLE, SIM_REPORT_INVALID). */
export function readReport(file: string): FleetReport {
  return validateReport(readJsonFile(file, 'report', 'SIM_REPORT_INVALID'), file);
}

const addCounts = (into: Record<string, number>, from: Record<string, number>) => {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
};

const round1 = (x: number) => Math.round(x * 10) / 10;

/**
 * Merges the reports of the shards of one fleet into the report of the whole fleet, as exactly as
 * one run of every router would have written it: counts add, histograms merge bucket by bucket
 * (their percentiles are computed again from the merged buckets), memory and CPU add up (per
 * router: all processes' RSS over all routers started), processes and runs are listed.
 *
 * Refused (SimError): reports of different fleets or shard counts (SIM_MERGE_FLEETS_DIFFER), two
 * reports of the same shard (SIM_MERGE_SHARD_DUPLICATE), and missing shards
 * (SIM_MERGE_SHARDS_MISSING) unless `allowMissing`. Merged reports merge again like any other.
 */
export function mergeReports(inputs: readonly ReportInput[], options: MergeOptions = {}): FleetReport {
  if (inputs.length === 0) throw new SimError('SIM_USAGE', 'report merge: no reports to merge');
  const named = inputs.map((input, i) => {
    const name = input.file ?? `report ${i + 1}`;
    return { name, file: input.file, report: validateReport(input.report, name) };
  });
  const first = named[0]!;
  const count = first.report.shard.count;
  const owner = new Map<number, string>();
  for (const { name, report } of named) {
    if (report.fleet.id !== first.report.fleet.id) {
      throw new SimError('SIM_MERGE_FLEETS_DIFFER', `${name} is a run of fleet ${report.fleet.id} (${report.fleet.routers} routers), ${first.name} of fleet ${first.report.fleet.id} (${first.report.fleet.routers} routers)`);
    }
    if (report.shard.count !== count) {
      throw new SimError('SIM_MERGE_FLEETS_DIFFER', `${name} slices the fleet into ${report.shard.count} shards, ${first.name} into ${count}: slices of different cuts overlap`);
    }
    for (const k of report.shard.indices) {
      const other = owner.get(k);
      if (other !== undefined) throw new SimError('SIM_MERGE_SHARD_DUPLICATE', `shard ${k}/${count} is in both ${other} and ${name}`);
      owner.set(k, name);
    }
  }
  const missing = Array.from({ length: count }, (_, i) => i + 1).filter((k) => !owner.has(k));
  if (missing.length > 0 && !options.allowMissing) {
    throw new SimError('SIM_MERGE_SHARDS_MISSING', `no report of shard${missing.length > 1 ? 's' : ''} ${missing.map((k) => `${k}/${count}`).join(', ')} (--allow-missing merges the others)`);
  }

  const reports = named.map((n) => n.report);
  const sum = (f: (r: FleetReport) => number) => reports.reduce((n, r) => n + f(r), 0);
  const states: Record<string, number> = {};
  const errors: Record<string, number> = {};
  const reconnectBins: Record<string, number> = {};
  const counters = {} as Record<string, number>;
  const histograms = new Map<string, Histogram>();
  for (const r of reports) {
    addCounts(states, r.states);
    addCounts(errors, r.errors);
    addCounts(reconnectBins, r.reconnectBins);
    addCounts(counters, r.counters);
    for (const [name, h] of Object.entries(r.raw.histograms)) {
      let into = histograms.get(name);
      if (!into) histograms.set(name, (into = new Histogram()));
      into.merge(h);
    }
  }
  const startedAt = Math.min(...reports.map((r) => Date.parse(r.startedAt)));
  const finishedAt = Math.max(...reports.map((r) => Date.parse(r.finishedAt)));
  const started = sum((r) => r.started);
  const rssBytes = sum((r) => r.memory.rssBytes);
  const heapUsedBytes = sum((r) => r.memory.heapUsedBytes);
  const routers = Math.max(1, started);
  // A run's processes carry its slice; a merged report's already do.
  const tag = <P extends { shard?: number }>(list: P[], r: FleetReport) =>
    list.map((p) => (p.shard !== undefined || r.shard.indices.length !== 1 ? p : { ...p, shard: r.shard.indices[0]! }));
  const runs: MergedRun[] = named.flatMap(({ file, report: r }) => r.merged?.runs ?? [{
    ...(file ? { file } : {}),
    indices: r.shard.indices,
    startedAt: r.startedAt,
    durationSec: r.durationSec,
    devices: r.devices,
    started: r.started,
    rssBytes: r.memory.rssBytes,
    rssPerRouterBytes: r.memory.rssPerRouterBytes,
    ...(r.steps ? { steps: r.steps } : {}),
  }]);
  const tagJob = (j: unknown, r: FleetReport) => (isRecord(j) && j['shard'] === undefined && r.shard.indices.length === 1 ? { ...j, shard: r.shard.indices[0] } : j);
  const jobs = reports.flatMap((r) => (r.jobs ?? []).map((j) => tagJob(j, r)));
  const names = [...histograms.keys()];
  return {
    startedAt: new Date(startedAt).toISOString(),
    finishedAt: new Date(finishedAt).toISOString(),
    durationSec: round1((finishedAt - startedAt) / 1000),
    fleet: first.report.fleet,
    shard: { count, indices: [...owner.keys()].sort((a, b) => a - b) },
    devices: sum((r) => r.devices),
    started,
    processes: sum((r) => r.processes),
    states,
    managed: sum((r) => r.managed),
    unmanaged: sum((r) => r.unmanaged),
    rejected: sum((r) => r.rejected),
    backingOff: sum((r) => r.backingOff),
    histograms: Object.fromEntries(names.map((h) => [h, histograms.get(h)!.summary()])),
    raw: { histograms: Object.fromEntries(names.map((h) => [h, histograms.get(h)!.toJSON()])) },
    reconnects: sum((r) => r.reconnects),
    reconnectBins,
    counters: counters as FleetReport['counters'],
    errors,
    memory: {
      processes: reports.flatMap((r) => tag(r.memory.processes, r)),
      rssBytes,
      heapUsedBytes,
      rssPerRouterBytes: Math.round(rssBytes / routers),
      heapPerRouterBytes: Math.round(heapUsedBytes / routers),
    },
    cpu: {
      processes: reports.flatMap((r) => tag(r.cpu.processes, r)),
      seconds: round1(sum((r) => r.cpu.seconds)),
      percentOfOneCore: round1(sum((r) => r.cpu.percentOfOneCore)),
    },
    ...(jobs.length ? { jobs } : {}),
    merged: { runs, missing },
  };
}
