// One real agent process (emulated platform) connected to the reference server over TLS for N
// minutes (default 10); prints its RSS every minute. Run from the repository root after a build:
//   npm run build && node loadtest/bench/idle-agent.mjs 10
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stage } from '../dist/stage.js';

const AGENT_CLI = fileURLToPath(new URL('../../agent/dist/cli.js', import.meta.url));
const minutes = Number(process.argv[2] ?? 10);
const st = await stage({ devices: 1, plan: 'basic-1', licences: 1 });
const devices = await st.rest.json('GET', '/api/inventory/managed-devices?limit=1');
const uuid = devices.items[0].uuid;
const res = await st.rest.raw('GET', `/api/inventory/managed-devices/${uuid}/connection-profile?format=update-packet`);
const agentDir = mkdtempSync(join(tmpdir(), 'idle-agent-'));
const profile = join(agentDir, 'profile.tar');
writeFileSync(profile, Buffer.from(await res.body.arrayBuffer()));
execFileSync(process.execPath, [AGENT_CLI, 'provision', profile, '--data', join(agentDir, 'data'), '--trust-anchor', join(st.dataDir, 'signing', 'trust-anchors.pem')]);
const agent = spawn(process.execPath, [AGENT_CLI, 'run', '--data', join(agentDir, 'data'), '--no-supervise', '--boot-delay-max-sec', '0', '--log-level', 'warn'], { stdio: 'inherit' });
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${agent.pid}/status`, 'utf8'))[1]);
const samples = [];
for (let m = 1; m <= minutes; m++) {
  await new Promise((r) => setTimeout(r, 60_000));
  const dev = await st.rest.json('GET', `/api/inventory/managed-devices/${uuid}`);
  samples.push({ minute: m, rssKiB: rss(), status: dev.status });
  console.log(JSON.stringify(samples.at(-1)));
}
agent.kill('SIGTERM');
await st.server.stop();
console.log(JSON.stringify({ name: 'idle agent RSS after 10 min', rssKiB: samples.at(-1).rssKiB, samples }));
process.exit(0);
