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

const ROUNDS = 20_000;
const TYPES = ['hello', 'status', 'job-progress'] as const;

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
  conditional: number;
  indirect: number;
}

/** The totals of one callgrind run of `mode` on `type` for `rounds` measured rounds. */
function countRun(mode: string, type: string, rounds: number): Promise<Record<string, number>> {
  const out = join(dir, `${mode}.${type}.${rounds}.out`);
  const args = [
    '--tool=callgrind', '--branch-sim=yes', `--callgrind-out-file=${out}`,
    process.execPath, '--single-threaded', '--hash-seed=1', '--random-seed=1', worker, mode, type, String(rounds),
  ];
  return new Promise((resolve, reject) => {
    execFile('valgrind', args, { maxBuffer: 1 << 24 }, (err) => {
      if (err) return reject(new Error(`${mode} ${type}: ${err.message}`));
      const lines = readFileSync(out, 'utf8').split('\n');
      const events = lines.find((l) => l.startsWith('events:'))?.split(/\s+/).slice(1) ?? [];
      const totals = (lines.find((l) => l.startsWith('summary:')) ?? lines.find((l) => l.startsWith('totals:')))
        ?.split(/\s+/).slice(1).map(Number) ?? [];
      resolve(Object.fromEntries(events.map((e, i) => [e, totals[i] ?? Number.NaN])));
    });
  });
}

/** Per operation: (counts at 2N rounds - counts at N rounds) / N. */
async function perOperation(mode: string, type: string): Promise<Counts> {
  const [once, twice] = [await countRun(mode, type, ROUNDS), await countRun(mode, type, 2 * ROUNDS)];
  const per = (event: string) => +((twice[event]! - once[event]!) / ROUNDS).toFixed(1);
  return { instructions: per('Ir'), conditional: per('Bcm'), indirect: per('Bim') };
}

const jobs: { name: string; mode: string; type: string }[] = [];
for (const type of TYPES) {
  jobs.push({ name: `json-parse ${type}`, mode: 'json-parse', type }, { name: `decode+validate ${type}`, mode: 'decode', type });
}
for (const type of TYPES) {
  jobs.push(
    { name: `json-stringify ${type}`, mode: 'json-stringify', type },
    { name: `encode ${type} (validated)`, mode: 'encode', type },
  );
}
const results = new Map<string, Counts>();
let next = 0;
await Promise.all(
  Array.from({ length: Math.max(1, availableParallelism()) }, async () => {
    while (next < jobs.length) {
      const job = jobs[next++]!;
      results.set(job.name, await perOperation(job.mode, job.type));
    }
  }),
);
for (let i = 0; i < jobs.length; i += 2) {
  const floor = jobs[i]!;
  const ours = jobs[i + 1]!;
  const f = results.get(floor.name)!;
  const o = results.get(ours.name)!;
  const mispredicted = (c: Counts) => ({ conditional: c.conditional, indirect: c.indirect });
  console.log(JSON.stringify({ name: floor.name, instructions: f.instructions, mispredicted: mispredicted(f) }));
  console.log(JSON.stringify({
    name: ours.name,
    instructions: o.instructions,
    mispredicted: mispredicted(o),
    floor: floor.name,
    ratio: +(f.instructions / o.instructions).toFixed(3),
  }));
}
