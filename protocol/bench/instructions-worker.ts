/**
 * One codec operation run N times after a warm-up, for `instructions.ts` to count under callgrind:
 * `instructions-worker.ts <json-parse|decode|json-stringify|encode> <hello|status|job-progress> <N>`.
 * The messages' own values come from a seeded source, so that two runs do the same work.
 */
import { type BenchType, type CodecOperation, codecCases, fleetMessages, seededSource } from './fleet-messages.js';

const [operation, type, count] = process.argv.slice(2);
const list = fleetMessages(seededSource())[type as BenchType];
const n = Number(count);
const run = list === undefined ? undefined : codecCases(list).run[operation as CodecOperation];
if (run === undefined || !Number.isInteger(n)) {
  throw new Error(`usage: instructions-worker <operation> <type> <N>, got ${process.argv.slice(2).join(' ')}`);
}
let sink = 0;
// Enough rounds for V8 to have optimised the operation before the measured ones.
for (let i = 0; i < 20_000; i++) if (run(i)) sink++;
for (let i = 0; i < n; i++) if (run(i)) sink++;
if (sink < 0) console.log(sink);
