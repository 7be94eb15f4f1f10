/**
 * Soak: one agent (the bundle, emulated platform) connected over TLS to the reference server for
 * `--minutes`, with a day's traffic compressed into the hour by default: the server pings after 5 s
 * of silence (720 keep-alives an hour = 24 h at the default 120 s), the agent reports its status
 * every 37 s (≈ 96 an hour = 24 h at the default 900 s), and the server restarts every 5 minutes
 * (12 reconnects). RSS of the agent and of a bare `node` is sampled every minute.
 *   npm run build && node agent/bench/soak.mjs [--minutes 60] [--no-build] [--bundle DIR] [--node-flags "..."]
 * Prints a JSON line per minute, then a summary: RSS at the end of the warm-up (`--warmup-min`,
 * default 10) and at the end, and the least-squares slope after the warm-up (KiB per hour).
 */
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { idleNode, ROOT, rssKiB, stageOneDevice, waitFor } from './stage.mjs';

const { values: opts } = parseArgs({
  options: {
    minutes: { type: 'string', default: '60' },
    'warmup-min': { type: 'string', default: '10' },
    'ping-interval-sec': { type: 'string', default: '5' },
    'status-interval-sec': { type: 'string', default: '37' },
    'restart-every-min': { type: 'string', default: '5' },
    'no-build': { type: 'boolean', default: false },
    bundle: { type: 'string', default: join(ROOT, 'agent', 'dist-bundle') },
    'node-flags': { type: 'string', default: '' },
  },
});
const minutes = Number(opts.minutes);
const warmup = Number(opts['warmup-min']);
const restartEvery = Number(opts['restart-every-min']);
if (!opts['no-build']) execFileSync(process.execPath, [join(ROOT, 'agent', 'scripts', 'bundle.mjs'), '--outdir', opts.bundle], { stdio: 'ignore' });
const entry = join(opts.bundle, 'fleet-agent.mjs');
const nodeFlags = opts['node-flags'].split(' ').filter(Boolean);

const pingSec = Number(opts['ping-interval-sec']);
const stage = await stageOneDevice({ agentEntry: entry, device: { connectionPingInterval: pingSec, connectionPongTimeout: Math.min(pingSec, 10) } });
const bare = idleNode();
const agent = spawn(
  process.execPath,
  [...nodeFlags, entry, 'run', '--no-supervise', '--data', stage.agentDir, '--boot-delay-max-sec', '0', '--backoff-base-ms', '500', '--backoff-max-ms', '5000',
    '--status-interval-sec', opts['status-interval-sec'], '--log-level', 'warn'],
  { stdio: ['ignore', 'ignore', 'inherit'] },
);
let agentExit;
agent.once('exit', (code, signal) => (agentExit = { code, signal }));
const online = () =>
  waitFor('the agent online and managed', async () => {
    const d = await stage.device();
    return d.status === 'online' && d.admission === 'managed';
  }, 120_000);

const samples = [];
let reconnects = 0;
const started = Date.now();
try {
  await online();
  for (let m = 1; m <= minutes; m++) {
    await new Promise((r) => setTimeout(r, started + m * 60_000 - Date.now()));
    if (agentExit) throw new Error(`the agent exited: ${JSON.stringify(agentExit)}`);
    const sample = { name: 'soak-minute', minute: m, agentKiB: rssKiB(agent.pid), bareNodeKiB: rssKiB(bare.pid), reconnects };
    samples.push(sample);
    console.log(JSON.stringify(sample));
    if (restartEvery > 0 && m % restartEvery === 0 && m < minutes) {
      await stage.restartServer();
      await online();
      reconnects++;
    }
  }
  const after = samples.filter((s) => s.minute >= warmup);
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const mx = mean(after.map((s) => s.minute));
  const my = mean(after.map((s) => s.agentKiB));
  const slope = after.reduce((n, s) => n + (s.minute - mx) * (s.agentKiB - my), 0) / after.reduce((n, s) => n + (s.minute - mx) ** 2, 0);
  console.log(
    JSON.stringify({
      name: 'soak',
      node: process.version,
      nodeFlags,
      minutes,
      pingIntervalSec: pingSec,
      statusIntervalSec: Number(opts['status-interval-sec']),
      keepAlivesApprox: Math.round((minutes * 60) / pingSec),
      reconnects,
      warmupMin: warmup,
      agentKiBAfterWarmup: after[0]?.agentKiB,
      agentKiBMax: Math.max(...after.map((s) => s.agentKiB)),
      agentKiBEnd: samples.at(-1)?.agentKiB,
      slopeKiBPerHourAfterWarmup: Math.round(slope * 60),
      bareNodeKiBEnd: samples.at(-1)?.bareNodeKiB,
    }),
  );
} finally {
  agent.kill('SIGTERM');
  bare.kill();
  if (!agentExit) await new Promise((r) => agent.once('exit', r));
  await stage.close();
}
