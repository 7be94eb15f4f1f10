/**
 * Instruction counts of the codec next to its floors: `npm run bench:instructions -w protocol`
 * (needs valgrind). Unlike the timed cases of `run.ts`, whose ratios move by ±0.05 with what else
 * runs on the machine, the counts repeat exactly from run to run, so a change to the codec can be
 * judged by them first.
 *
 * Each case runs in `instructions-worker.ts`, bundled once with esbuild (tsx's loader compiles on
 * another thread and would change the counts between runs), under
 * `valgrind --tool=callgrind --branch-sim=yes` with V8 kept deterministic (one thread, fixed hash
 * and random seeds), once for N and once for 2N rounds after the same warm-up: the difference
 * divided by N is one operation, start-up and warm-up cancelled. Prints one JSON line per case:
 * instructions and mispredicted branches (callgrind's simple predictor, not the processor's) per
 * operation, and `ratio` = the floor's instructions ÷ the case's.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { type BenchType, type CodecOperation } from './fleet-messages.js';

const ROUNDS = 20_000;
const TYPES: BenchType[] = ['hello', 'status', 'job-progress'];

if (spawnSync('valgrind', ['--version']).status !== 0) {
  console.error('valgrind is needed for instruction counts (Debian: apt-get install valgrind)');
  process.exit(1);
}

const dir = mkdtempSync(join(tmpdir(), 'codec-instructions-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const worker = join(dir, 'worker.mjs');
await build({
  entryPoints: [fileURLToPath(new URL('./instructions-worker.ts', import.meta.url))],
  bundle: true,
  platform: 'node',
  format: 'esm',
  outfile: worker,
  logLevel: 'warning',
});

interface Counts {
  instructions: number;
  mispredicted: { conditional: number; indirect: number };
}

/** The totals of one callgrind run of `operation` on `type` for `rounds` measured rounds. */
function countRun(operation: CodecOperation, type: BenchType, rounds: number): Promise<Record<string, number>> {
  const out = join(dir, `${operation}.${type}.${rounds}.out`);
  const args = [
    '--tool=callgrind', '--branch-sim=yes', `--callgrind-out-file=${out}`,
    process.execPath, '--single-threaded', '--hash-seed=1', '--random-seed=1', worker, operation, type, String(rounds),
  ];
  return new Promise((resolve, reject) => {
    execFile('valgrind', args, { maxBuffer: 1 << 24 }, (err) => {
      if (err) return reject(new Error(`${operation} ${type}: ${err.message}`));
      const lines = readFileSync(out, 'utf8').split('\n');
      const events = lines.find((l) => l.startsWith('events:'))?.split(/\s+/).slice(1) ?? [];
      const totals = (lines.find((l) => l.startsWith('summary:')) ?? lines.find((l) => l.startsWith('totals:')))
        ?.split(/\s+/).slice(1).map(Number) ?? [];
      resolve(Object.fromEntries(events.map((e, i) => [e, totals[i] ?? Number.NaN])));
    });
  });
}

/** Per operation: (counts at 2N rounds - counts at N rounds) / N. */
async function perOperation(operation: CodecOperation, type: BenchType): Promise<Counts> {
  const once = await countRun(operation, type, ROUNDS);
  const twice = await countRun(operation, type, 2 * ROUNDS);
  const per = (event: string) => +((twice[event]! - once[event]!) / ROUNDS).toFixed(1);
  return { instructions: per('Ir'), mispredicted: { conditional: per('Bcm'), indirect: per('Bim') } };
}

interface Measured {
  name: string;
  operation: CodecOperation;
  type: BenchType;
  counts?: Counts;
}
const pairs: { floor: Measured; ours: Measured }[] = [
  ...TYPES.map((type) => ({
    floor: { name: `json-parse ${type}`, operation: 'json-parse' as const, type },
    ours: { name: `decode+validate ${type}`, operation: 'decode' as const, type },
  })),
  ...TYPES.map((type) => ({
    floor: { name: `json-stringify ${type}`, operation: 'json-stringify' as const, type },
    ours: { name: `encode ${type} (validated)`, operation: 'encode' as const, type },
  })),
];
const queue = pairs.flatMap((pair) => [pair.floor, pair.ours]);
await Promise.all(
  Array.from({ length: Math.max(1, availableParallelism()) }, async () => {
    for (let job = queue.shift(); job !== undefined; job = queue.shift()) {
      job.counts = await perOperation(job.operation, job.type);
    }
  }),
);
for (const { floor, ours } of pairs) {
  const f = floor.counts!;
  const o = ours.counts!;
  console.log(JSON.stringify({ name: floor.name, ...f }));
  console.log(JSON.stringify({ name: ours.name, ...o, floor: floor.name, ratio: +(f.instructions / o.instructions).toFixed(3) }));
}
