// A separate process admitting devices against a shared store, for the race and crash tests.
// Usage: node --import ts-register.mjs admission-child.ts <mode> <dataDir> <clockMs> <devices.json> [postgres://…]
//   (with a URL the store is that PostgreSQL database, else the SQLite file in dataDir)
//   warm:  loads the modules and exits.
//   race:  prints "ready", waits for "go" on stdin, admits every device once, prints one JSON line
//          per result, exits.
//   burst: admits and releases devices at random forever, printing "BEGIN <uuid>" before and
//          "ACK <uuid> <op> <outcome>" after each committed operation, until killed.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { AdmissionService } from '../../src/admission/service.js';
import { TestClock } from '../../src/clock.js';
import { Store } from '../../src/store/database.js';

interface Device {
  uuid: string;
  serialNumber: string;
  credential: string;
}

const [mode, dataDir, clockMs, devicesFile, storeUrl] = process.argv.slice(2);
// `warm`: only load (and so transpile into the cache) the modules, so racers start together.
if (mode === 'warm') process.exit(0);
const devices = JSON.parse(readFileSync(devicesFile!, 'utf8')) as Device[];
const clock = new TestClock(Number(clockMs));
const store = Store.select(storeUrl, dataDir!, { busyTimeoutMs: 20_000 });
const admission = new AdmissionService(store, clock, { leaseGraceSec: 0, admissionRetryAfterSec: 60 });
const out = (line: string) => process.stdout.write(`${line}\n`);

if (mode === 'race') {
  out('ready');
  const rl = createInterface({ input: process.stdin });
  rl.once('line', () => {
    for (const d of devices) {
      const r = admission.admit({ serialNumber: d.serialNumber, credential: d.credential });
      out(JSON.stringify({ device: d.uuid, outcome: r.outcome }));
    }
    rl.close();
    store.close();
    process.exit(0);
  });
} else if (mode === 'burst') {
  const connected = new Set<string>();
  out('ready');
  for (;;) {
    const d = devices[Math.floor(Math.random() * devices.length)]!;
    out(`BEGIN ${d.uuid}`);
    clock.advance(1);
    if (connected.has(d.uuid)) {
      admission.release(d.uuid);
      connected.delete(d.uuid);
      out(`ACK ${d.uuid} release -`);
    } else {
      const r = admission.admit({ serialNumber: d.serialNumber, credential: d.credential });
      if (r.outcome === 'managed') connected.add(d.uuid);
      out(`ACK ${d.uuid} admit ${r.outcome}`);
    }
  }
}
