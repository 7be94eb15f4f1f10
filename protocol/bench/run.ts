/**
 * Protocol benchmarks: `npm run bench -w protocol`. Prints one JSON line per case; each measured
 * case is run next to its floor (bare JSON.parse of the same bytes, bare JSON.stringify, bare
 * MD5+SHA-256 hashing) in the same process and run, and carries `ratio` = case / floor.
 */
import { createMessage, decode, encode, type Message } from '../src/index.js';

type Row = {
  name: string;
  opsPerSec?: number;
  mbPerSec?: number;
  bytes?: number;
  floor?: string;
  ratio?: number;
};
const rows: Row[] = [];
const print = (row: Row) => {
  rows.push(row);
  console.log(JSON.stringify(row));
};

/** Best ops/s over `rounds` timed rounds of ~`ms` each. */
function opsPerSec(fn: () => unknown, ms = 300, rounds = 5): number {
  let best = 0;
  let sink = 0;
  for (let r = 0; r < rounds; r++) {
    let n = 0;
    const start = process.hrtime.bigint();
    const end = start + BigInt(ms) * 1_000_000n;
    let now = start;
    while (now < end) {
      for (let i = 0; i < 200; i++) if (fn()) sink++;
      n += 200;
      now = process.hrtime.bigint();
    }
    best = Math.max(best, n / (Number(now - start) / 1e9));
  }
  if (sink < 0) console.log(sink);
  return Math.round(best);
}

const now = 1_795_000_000_000;
const sha = (c: string) => c.repeat(64);
const messages: Record<string, Message> = {
  hello: createMessage(
    'hello',
    {
      serialNumber: 'MRX5-2011-000123',
      deviceId: '2f1c7e5a-3b7d-4c1e-9a55-0d3c5e7b9a10',
      credential: 'c2VjcmV0LWRldmljZS1jcmVkZW50aWFsMTIzNDU2',
      model: 'MRX5 LTE',
      firmwareVersion: '10.3.2',
      agentVersion: '0.1.0',
      capabilities: ['firmware', 'configuration-profile', 'certificate', 'container', 'analytics'],
      bootId: 'b7c1d9e0-5f2a-4b3c-8d4e-1a2b3c4d5e6f',
      inventory: {
        activeSlot: 'a',
        configurationVersion: '7',
        certificates: 3,
        containers: 1,
        storageFreeBytes: 268435456,
      },
    },
    { sentAt: now },
  ),
  status: createMessage(
    'status',
    {
      uptimeSec: 86400,
      link: { type: 'lte', up: true, signalQuality: 72, rssiDbm: -71 },
      firmwareVersion: '10.3.2',
      configurationVersion: '7',
      certificates: ['a', 'b', 'c', 'd'].map((c, i) => ({
        fingerprintSha256: sha(c),
        subject: `CN=vpn-client-00012${i},OU=Plant ${i},O=Example Water Works`,
        notAfter: '2027-06-30T23:59:59Z',
      })),
      containers: [
        { name: 'modbus-bridge', version: '2.4.1', state: 'running' },
        { name: 'node-red', version: '4.0.2', state: 'stopped' },
      ],
      location: { lat: 48.7758, lon: 9.1829, accuracyM: 25 },
    },
    { sentAt: now },
  ),
  'job-progress': createMessage(
    'job-progress',
    {
      executionId: 'exe-7f3a',
      state: 'downloading',
      percent: 37.5,
      bytesDone: 3932160,
      bytesTotal: 10485760,
    },
    { sentAt: now },
  ),
};

for (const [type, message] of Object.entries(messages)) {
  const bytes = Buffer.from(encode(message));
  const floor = opsPerSec(() => JSON.parse(bytes.toString('utf8')));
  const ours = opsPerSec(() => decode(bytes));
  print({ name: `json-parse ${type}`, opsPerSec: floor, bytes: bytes.length });
  print({
    name: `decode+validate ${type}`,
    opsPerSec: ours,
    bytes: bytes.length,
    floor: `json-parse ${type}`,
    ratio: +(ours / floor).toFixed(2),
  });
}
{
  const message = messages.status!;
  const floor = opsPerSec(() => JSON.stringify(message));
  const validated = opsPerSec(() => encode(message));
  const unvalidated = opsPerSec(() => encode(message, { validate: false }));
  print({ name: 'json-stringify status', opsPerSec: floor });
  print({
    name: 'encode status (validated)',
    opsPerSec: validated,
    floor: 'json-stringify status',
    ratio: +(validated / floor).toFixed(2),
  });
  print({
    name: 'encode status (no validation)',
    opsPerSec: unvalidated,
    floor: 'json-stringify status',
    ratio: +(unvalidated / floor).toFixed(2),
  });
}

try {
  const { runPacketBench } = await import('./packet-bench.js');
  for (const row of await runPacketBench()) print(row);
} catch (err) {
  if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
  console.error('packet benchmark not available');
}
