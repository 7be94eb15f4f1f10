/**
 * Memory per idle agent on the memory platform (the simulator's case): N agents on one shared clock
 * and an in-memory transport, each welcomed by a minimal in-process server, then idle.
 *   npm run build && node --expose-gc agent/bench/heap-per-agent.mjs [N]
 * (measures the compiled dist/, as the simulator runs it). Prints heap bytes per platform, per agent
 * (session, jobs, reporting) and in total. One agent process's RSS: bench/memory.mjs.
 */
import { createMessage, encode } from '@router-fleet/protocol';
import { createAgent, createMemoryPlatform, createSharedClock, MemoryNetwork, resolveConfig, seededRandom } from '../dist/index.js';
import { createTestPki } from '../dist/packet-api.js';

const N = Number(process.argv[2] ?? 2000);
const gc = globalThis.gc;
if (!gc) throw new Error('run with node --expose-gc');
const heap = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

const pki = await createTestPki({ keyBits: 1024 });
const clock = createSharedClock();
const network = new MemoryNetwork();
let welcomed = 0;
network.listen('wss://bench/channel', (conn) => {
  conn.onMessage = (text) => {
    const m = JSON.parse(text);
    if (m.type === 'hello') {
      welcomed++;
      const welcome = createMessage(
        'welcome',
        {
          admission: 'managed',
          deviceId: m.body.deviceId,
          session: { pingIntervalSec: 120, pongTimeoutSec: 104, sessionTimeoutSec: 16 },
          analyticsConsent: false,
          serverTime: Date.now(),
        },
        { correlationId: m.id },
      );
      conn.send(encode(welcome));
    } else if (m.type === 'event') conn.send(encode(createMessage('ack', { seqs: [m.body.seq] })));
  };
});
const config = resolveConfig({ dataDir: '', bootDelayMaxSec: 0 });
// Shared strings, as a simulator shares them: the CA and the anchors are the same for every router.
const base = {
  format: 'router-fleet.connection-profile/1',
  serverUrl: 'wss://bench/channel',
  caCertPem: pki.root.certPem,
  trustAnchorsPem: [pki.root.certPem],
};

const h0 = heap();
const platforms = [];
for (let i = 0; i < N; i++) platforms.push(await createMemoryPlatform({ clock, random: seededRandom(i + 1), serialNumber: `SN-${i}` }));
const h1 = heap();
const agents = [];
for (let i = 0; i < N; i++) {
  const profile = { ...base, deviceId: `dev-${i}`, serialNumber: `SN-${i}`, credential: `credential-${String(i).padStart(8, '0')}` };
  const agent = createAgent(config, platforms[i], { transport: network.transport, profile });
  await agent.start();
  agents.push(agent);
}
while (welcomed < N) await new Promise((r) => setTimeout(r, 50));
await new Promise((r) => setTimeout(r, 1000));
const h2 = heap();
const kb = (bytes) => `${(bytes / 1024).toFixed(1)} KiB`;
console.log(`node ${process.version}, ${N} agents (memory platform, shared clock, in-memory transport, idle and managed)`);
console.log(`platform per device: ${kb((h1 - h0) / N)}`);
console.log(`agent per device:    ${kb((h2 - h1) / N)}`);
console.log(`total per device:    ${kb((h2 - h0) / N)}`);
console.log(`shared-clock timers pending: ${clock.pending()} (${(clock.pending() / N).toFixed(1)} per agent)`);
for (const a of agents) await a.stop();
process.exit(0);
