/**
 * One codec case run N times after a warm-up, for `instructions.ts` to count under callgrind:
 * `instructions-worker.ts <json-parse|decode|json-stringify|encode> <hello|status|job-progress> <N>`.
 * The messages' own values come from a seeded source, so that two runs do the same work.
 */
import { decode, encode } from '../src/index.js';
import { type BenchType, fleetMessages, ROUTERS, seededSource } from './fleet-messages.js';

const [mode, type, count] = process.argv.slice(2);
const list = fleetMessages(seededSource())[type as BenchType];
const n = Number(count);
if (list === undefined || !Number.isInteger(n)) throw new Error(`usage: instructions-worker <mode> <type> <N>, got ${process.argv.slice(2).join(' ')}`);
const frames = list.map((message) => Buffer.from(encode(message)));
const MASK = ROUTERS - 1;
const cases: Record<string, (i: number) => unknown> = {
  'json-parse': (i) => JSON.parse(frames[i & MASK]!.toString('utf8')),
  decode: (i) => decode(frames[i & MASK]!),
  'json-stringify': (i) => JSON.stringify(list[i & MASK]),
  encode: (i) => encode(list[i & MASK]!),
};
const run = cases[mode!];
if (run === undefined) throw new Error(`unknown mode ${mode}`);
let sink = 0;
// Enough rounds for V8 to have optimised the case before the measured ones.
for (let i = 0; i < 20_000; i++) if (run(i)) sink++;
for (let i = 0; i < n; i++) if (run(i)) sink++;
if (sink < 0) console.log(sink);
