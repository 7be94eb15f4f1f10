/**
 * What slicing a fleet costs at start: `scanFleet` (parse every profile line, SHA-256 of each
 * serial number, the fleet's identity over the sorted ids) next to its floor measured in the same
 * run: reading the same file's lines without parsing them (readline), and the byte scan counting
 * its lines that `startFleet` did before shards.
 *
 *   npx tsx simulator/bench/shard-scan.ts [routers=100000] [shards=2]
 *
 * Prints one JSON line per case. The profile lines are synthetic with the sizes of real ones
 * (certificate, trust anchor and credential of provisioned profiles).
 */
import { createReadStream, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { scanFleet } from '../src/shard.js';

const routers = Number(process.argv[2] ?? 100_000);
const shards = Number(process.argv[3] ?? 2);
const dir = mkdtempSync(join(tmpdir(), 'shard-scan-'));
const file = join(dir, 'profiles.ndjson');
const pem = `-----BEGIN CERTIFICATE-----\n${'MIIBkTCB+wIJAKHHCgVZU1JzMA0GCSqGSIb3DQEBCwUAMBExDzANBgNVBAMMBnRlc3RDQTAeFw0y\n'.repeat(9)}-----END CERTIFICATE-----\n`;
const lines: string[] = [];
for (let i = 0; i < routers; i++) {
  const serialNumber = `RUT95${String(i).padStart(9, '0')}`;
  lines.push(JSON.stringify({
    profile: {
      format: 'router-fleet-profile/1', serverUrl: 'wss://127.0.0.1:8443/api/devices/channel', caCertPem: pem, trustAnchorsPem: [pem],
      deviceId: `0b5e${String(i).padStart(8, '0')}-1f2e-4c3d-9a8b-7c6d5e4f3a2b`, serialNumber, credential: 'x'.repeat(64),
    },
    sim: { model: 'RUT955', firmware: 'RUT9_R_00.07.06', lat: 54.68, lon: 25.27 },
  }));
}
writeFileSync(file, `${lines.join('\n')}\n`);
const bytes = statSync(file).size;

async function countLines(): Promise<number> {
  let n = 0;
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) for (const b of chunk) if (b === 10) n++;
  return n;
}

async function readLines(): Promise<number> {
  let n = 0;
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) if (line.length) n++;
  return n;
}

const time = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
  const t = process.hrtime.bigint();
  const value = await f();
  return [value, Number(process.hrtime.bigint() - t) / 1e6];
};

try {
  for (let round = 0; round < 2; round++) { // the first round warms the file cache and the JIT
    const [n, floorMs] = await time(countLines);
    const [, readMs] = await time(readLines);
    const [scan, scanMs] = await time(() => scanFleet(file, { index: 1, count: shards }));
    if (round === 0) continue;
    const line = {
      bench: 'shard-scan', routers: n, shards, fileMB: +(bytes / 1048576).toFixed(1), selected: scan.selected.length,
      scanMs: Math.round(scanMs), perRouterUs: +((scanMs * 1000) / n).toFixed(2),
      floorReadLinesMs: Math.round(readMs), ratioToReadLines: +(scanMs / readMs).toFixed(1), beforeCountLinesMs: Math.round(floorMs),
    };
    process.stdout.write(`${JSON.stringify(line)}\n`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
