/**
 * Protocol benchmarks: `npm run bench -w protocol` (`-- --codec` for the codec cases only). Prints
 * one JSON line per case; each measured case is run next to its floor (bare JSON.parse of the same
 * bytes, bare JSON.stringify of the same message, bare MD5+SHA-256 hashing) in the same process and
 * run, and carries `ratio` = case / floor.
 *
 * The codec cases alternate short rounds of the case and its floor (ABBA order), so that load from
 * other processes on a shared machine hits both alike, and count operations per second of the
 * process's CPU time: `opsPerSec` is the median over the rounds of each, `ratio` the median of the
 * per-round ratios (`rounds` of them).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { type CodecOperation, codecCases, fleetMessages } from './fleet-messages.js';

type Row = {
  name: string;
  opsPerSec?: number;
  mbPerSec?: number;
  bytes?: number;
  floor?: string;
  ratio?: number;
  rounds?: number;
};
const rows: Row[] = [];
const print = (row: Row) => {
  rows.push(row);
  console.log(JSON.stringify(row));
};

let sink = 0;
/**
 * Operations per second of `fn` over one round of about `ms` milliseconds, counted against the
 * CPU time the process got in that round (user + system), not the wall clock: on a shared machine
 * the wall clock also counts the time other processes had the core.
 */
function round(fn: () => unknown, ms: number): number {
  let n = 0;
  const cpuStart = process.cpuUsage();
  const end = process.hrtime.bigint() + BigInt(ms) * 1_000_000n;
  do {
    for (let i = 0; i < 100; i++) if (fn()) sink++;
    n += 100;
  } while (process.hrtime.bigint() < end);
  const cpu = process.cpuUsage(cpuStart);
  return n / ((cpu.user + cpu.system) / 1e6);
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/** Runs `ours` and `floor` in alternating rounds (after one warm-up round each). */
function compare(floor: () => unknown, ours: () => unknown, rounds = 16, ms = 100) {
  round(floor, ms);
  round(ours, ms);
  const f: number[] = [];
  const o: number[] = [];
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let a: number;
    let b: number;
    if (r % 2 === 0) {
      a = round(floor, ms);
      b = round(ours, ms);
    } else {
      b = round(ours, ms);
      a = round(floor, ms);
    }
    f.push(a);
    o.push(b);
    ratios.push(b / a);
  }
  return { floor: Math.round(median(f)), ours: Math.round(median(o)), ratio: +median(ratios).toFixed(2) };
}

const messages = fleetMessages({ uuid: randomUUID, bytes: randomBytes });
const cases = Object.entries(messages).map(([type, list]) => ({ type, ...codecCases(list) }));

/** Runs `ours` against `floor` on the fleet's messages in turn. */
function compareCase(run: ReturnType<typeof codecCases>['run'], floor: CodecOperation, ours: CodecOperation) {
  let a = 0;
  let b = 0;
  return compare(() => run[floor](a++), () => run[ours](b++));
}

for (const { type, frames, run } of cases) {
  const { floor, ours, ratio } = compareCase(run, 'json-parse', 'decode');
  print({ name: `json-parse ${type}`, opsPerSec: floor, bytes: frames[0]!.length });
  print({
    name: `decode+validate ${type}`,
    opsPerSec: ours,
    bytes: frames[0]!.length,
    floor: `json-parse ${type}`,
    ratio,
    rounds: 16,
  });
}
for (const { type, run } of cases) {
  const validated = compareCase(run, 'json-stringify', 'encode');
  print({ name: `json-stringify ${type}`, opsPerSec: validated.floor });
  print({
    name: `encode ${type} (validated)`,
    opsPerSec: validated.ours,
    floor: `json-stringify ${type}`,
    ratio: validated.ratio,
    rounds: 16,
  });
  if (type === 'status') {
    const unvalidated = compareCase(run, 'json-stringify', 'encode-unvalidated');
    print({
      name: `encode ${type} (no validation)`,
      opsPerSec: unvalidated.ours,
      floor: `json-stringify ${type}`,
      ratio: unvalidated.ratio,
      rounds: 16,
    });
  }
}
if (sink < 0) console.log(sink);

if (!process.argv.includes('--codec')) {
  try {
    const { runPacketBench } = await import('./packet-bench.js');
    for (const row of await runPacketBench()) print(row);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    console.error('packet benchmark not available');
  }
}
