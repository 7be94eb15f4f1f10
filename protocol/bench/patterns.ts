/**
 * The pattern tests of the codec's fast check, measured one by one on strings just parsed from
 * JSON: `npx tsx protocol/bench/patterns.ts`. Prints one JSON line per case with the best of 40
 * rounds in ns per string. `repeated` digests are one letter 64 times (what `bench/run.ts` used to
 * send); `sha256` digests are real ones, whose mix of digits and letters V8's class test branches
 * on; `sha256 x4` and `x64` are 4 or 64 real ones in turn, whose branches the processor learns.
 */
import { createHash, randomUUID } from 'node:crypto';
import { simplerPattern } from '../src/fast-check.js';

const N = 4_000;
const parsed = (values: string[]) => (JSON.parse(JSON.stringify(values)) as string[]);
const digests = {
  repeated: parsed(Array.from({ length: N }, (_, i) => 'abcd'[i % 4]!.repeat(64))),
  sha256: parsed(Array.from({ length: N }, (_, i) => createHash('sha256').update(String(i)).digest('hex'))),
  // Four or 64 real digests in turn, as a bench that decodes the same messages again and again sees them.
  'sha256 x4': parsed(Array.from({ length: N }, (_, i) => createHash('sha256').update(String(i % 4)).digest('hex'))),
  'sha256 x64': parsed(Array.from({ length: N }, (_, i) => createHash('sha256').update(String(i % 64)).digest('hex'))),
};
const DATE = '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?(Z|[+-]\\d{2}:\\d{2})$';
const dates = parsed(Array.from({ length: N }, (_, i) => new Date(1.7e12 + i * 1e9).toISOString().replace(/\.\d+/, '')));
const uuids = parsed(Array.from({ length: N }, () => randomUUID()));

// A table loop without a branch on the character: the same time whatever the digits and letters.
const notHex = new Uint8Array(65_536).fill(1);
for (const c of '0123456789abcdef') notHex[c.charCodeAt(0)] = 0;
function hexLoop(s: string): boolean {
  let bad = 0;
  for (let i = 0; i < s.length; i++) bad |= notHex[s.charCodeAt(i)]!;
  return bad === 0;
}

// The same table read 16 characters a turn, as the fast check generates it for a 64-character digest.
function hexLoop16(s: string): boolean {
  if (s.length !== 64) return false;
  let bad = 0;
  for (let i = 0; i < 64; i += 16) {
    bad |= notHex[s.charCodeAt(i)]! | notHex[s.charCodeAt(i + 1)]! | notHex[s.charCodeAt(i + 2)]! | notHex[s.charCodeAt(i + 3)]!
      | notHex[s.charCodeAt(i + 4)]! | notHex[s.charCodeAt(i + 5)]! | notHex[s.charCodeAt(i + 6)]! | notHex[s.charCodeAt(i + 7)]!
      | notHex[s.charCodeAt(i + 8)]! | notHex[s.charCodeAt(i + 9)]! | notHex[s.charCodeAt(i + 10)]! | notHex[s.charCodeAt(i + 11)]!
      | notHex[s.charCodeAt(i + 12)]! | notHex[s.charCodeAt(i + 13)]! | notHex[s.charCodeAt(i + 14)]! | notHex[s.charCodeAt(i + 15)]!;
  }
  return bad === 0;
}

const tests = (re: RegExp, accept: boolean) => (s: string) => re.test(s) === accept;
const cases: [string, string[], (s: string) => boolean][] = [];
for (const [kind, values] of Object.entries(digests)) {
  cases.push([`digest ${kind}: search [^0-9a-f]`, values, tests(/[^0-9a-f]/, false)]);
  cases.push([`digest ${kind}: anchored ^[0-9a-f]+$`, values, tests(/^[0-9a-f]+$/, true)]);
  cases.push([`digest ${kind}: table loop`, values, hexLoop]);
  cases.push([`digest ${kind}: table loop, 16 a turn`, values, hexLoop16]);
}
cases.push(['date: schema pattern', dates, tests(new RegExp(DATE), true)]);
cases.push(['date: simplerPattern', dates, tests(new RegExp(simplerPattern(DATE)), true)]);
cases.push(['uuid: search [^A-Za-z0-9._:-]', uuids, tests(/[^A-Za-z0-9._:-]/, false)]);
cases.push(['uuid: anchored ^[A-Za-z0-9._:-]+$', uuids, tests(/^[A-Za-z0-9._:-]+$/, true)]);

let sink = 0;
const best = cases.map(() => Infinity);
for (let round = 0; round < 40; round++) {
  cases.forEach(([, values, test], c) => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < N; i++) if (test(values[i]!)) sink++;
    best[c] = Math.min(best[c]!, Number(process.hrtime.bigint() - start) / N);
  });
}
cases.forEach(([name], c) => console.log(JSON.stringify({ name, nsPerString: +best[c]!.toFixed(1) })));
if (sink !== 40 * N * cases.length) throw new Error('a test refused a valid string');
