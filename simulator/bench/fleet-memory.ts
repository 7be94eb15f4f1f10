/**
 * Memory per virtual router above the raw socket, and connects per second, against the real
 * reference server (HTTPS/WSS with a local CA, started as a child process).
 *
 *   npm run build && npx tsx simulator/bench/fleet-memory.ts [N] [RATE]
 *
 * The coordinator runs under tsx; the routers run in a child process on the compiled dist/ with
 * plain node (no loader inflating the agent's objects), as `fleet-sim run` runs them.
 * 1. Raw floor: N bare `ws` clients (TLS, same CA and source addresses) in a child process, idle,
 *    no hello: RSS and heap per socket.
 * 2. Fleet: N routers (agent core, memory platform, ws transport) in one child process, ramped at
 *    RATE/s, all managed, idle: RSS and heap per router; minus the raw floor = our overhead.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFleet } from '../src/fleet.js';
import { fleetToCsv, generateFleet } from '../src/fleet-generator.js';
import { provisionFleet } from '../src/provision.js';
import { startTestServer } from '../test/helpers/server.js';

const N = Number(process.argv[2] ?? 2000);
const RATE = Number(process.argv[3] ?? 500);
const kib = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
const simulatorDir = fileURLToPath(new URL('..', import.meta.url));

const RAW = `
import WebSocket from 'ws';
import { createSecureContext } from 'node:tls';
const [url, ca, n] = [process.argv[1], process.argv[2], Number(process.argv[3])];
const ctx = createSecureContext({ ca });
const gc = () => { globalThis.gc(); globalThis.gc(); };
gc();
const m0 = process.memoryUsage();
const sockets = [];
let open = 0;
await new Promise((resolve) => {
  let i = 0;
  const next = () => {
    for (let k = 0; k < 50 && i < n; k++, i++) {
      const ws = new WebSocket(url, 'router-fleet.v1', { secureContext: ctx, localAddress: '127.0.0.' + (1 + (i % 2)), perMessageDeflate: false });
      ws.on('open', () => { if (++open === n) resolve(); });
      ws.on('error', () => {});
      sockets.push(ws);
    }
    if (i < n) setTimeout(next, 20);
  };
  next();
});
await new Promise((r) => setTimeout(r, 1000));
gc();
const m1 = process.memoryUsage();
console.log(JSON.stringify({ open, rss: (m1.rss - m0.rss) / n, heap: (m1.heapUsed - m0.heapUsed) / n, external: (m1.external - m0.external) / n }));
process.exit(0);
`;

async function rawFloor(url: string, caPem: string, n: number): Promise<{ open: number; rss: number; heap: number; external: number }> {
  const child = spawn(process.execPath, ['--expose-gc', '--input-type=module', '-e', RAW, url, caPem, String(n)], { cwd: simulatorDir, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  await new Promise((r) => child.once('exit', r));
  return JSON.parse(out.trim().split('\n').at(-1)!) as { open: number; rss: number; heap: number; external: number };
}

const server = await startTestServer({ plan: 'basic-25', count: Math.ceil(N / 25), extraArgs: ['--helloTimeoutMs', '600000'] });
const dir = mkdtempSync(join(tmpdir(), 'fleet-sim-bench-'));
try {
  writeFileSync(join(dir, 'fleet.csv'), fleetToCsv(generateFleet({ devices: N, seed: 1 })));
  await provisionFleet({ server: server.url, token: server.token, caPem: server.caPem, fleetCsv: join(dir, 'fleet.csv'), outDir: dir });
  const channel = `${server.url.replace(/^https/, 'wss')}/api/channel`;
  const raw = await rawFloor(channel, server.caPem, N);

  const fleet = await startFleet({ profiles: dir, rate: RATE, processes: 1, execArgv: ['--expose-gc'], gcBeforeStats: true, statsIntervalMs: 1000 });
  const t0 = Date.now();
  const s = await fleet.waitFor((x) => x.managed === N, 600_000);
  const rampSec = (Date.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 5000)); // idle: status sent, buffers drained
  const idle = fleet.stats();
  const base = fleet.baseline[0]!;
  const proc = idle.memory.processes[0]!;
  const rssPer = (proc.rss - base.rss) / N;
  const heapPer = (proc.heapUsed - base.heapUsed) / N;
  console.log(`node ${process.version}, ${N} routers (agent core, memory platform, wss to fleet-server, 1 process), ramp ${RATE}/s`);
  console.log(`raw ws client socket (TLS, idle):   rss ${kib(raw.rss)}, heap ${kib(raw.heap)} per socket (${raw.open} open)`);
  console.log(`virtual router (idle, managed):     rss ${kib(rssPer)}, heap ${kib(heapPer)} per router`);
  console.log(`above the raw socket:               rss ${kib(rssPer - raw.rss)}, heap ${kib(heapPer - raw.heap)} per router`);
  console.log(`connects: ${N} managed in ${rampSec.toFixed(1)} s = ${(N / rampSec).toFixed(0)} routers/s admitted (ramp asked ${RATE}/s); connect p50 ${s.histograms.connect.summary().p50} ms p99 ${s.histograms.connect.summary().p99} ms; admission p50 ${s.histograms.admission.summary().p50} ms`);
  console.log(`simulator CPU: ${((idle.cpu.userMs + idle.cpu.systemMs) / 1000).toFixed(1)} s for the ramp and ${N} routers`);
  await fleet.stop();
} finally {
  await server.dispose();
  rmSync(dir, { recursive: true, force: true });
}
