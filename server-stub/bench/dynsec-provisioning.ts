/**
 * What batching does for device provisioning over the dynamic-security plugin: for each batch size,
 * a fresh Mosquitto (admin only), then `provision` of N devices (a role and a client each), a
 * reconcile with nothing to do, and `remove` of them all. Also the alternative for a broker that
 * starts with its devices: writing the plugin's file before the start.
 *
 *   npx tsx server-stub/bench/dynsec-provisioning.ts --devices 1000 --batches 1,10,100
 *   npx tsx server-stub/bench/dynsec-provisioning.ts --devices 100 --prewritten 9900 --batches 10,100
 *
 * `--prewritten K` starts each broker with K devices already in its file (written before the
 * start): the cost of provisioning at that size without waiting for K provisionings first.
 *
 * Prints one JSON line per run. The broker's CPU time is read from /proc (Linux).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DynsecAccounts } from '../src/channel/mqtt/dynsec.js';
import { channelDynsecFile, deviceClient, deviceRole } from '../src/channel/mqtt/mosquitto-files.js';
import { startMosquitto } from '../test/helpers/mosquitto.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const devices = Number(arg('devices', '1000'));
// `--batches none` measures only the file written before the start.
const batches = arg('batches', '1,10,100').split(',').filter((b) => b !== 'none').map(Number);
const prewritten = Number(arg('prewritten', '0'));
const skipRemove = process.argv.includes('--no-remove');
const ADMIN = { username: 'bench-admin', password: randomBytes(12).toString('hex') };

/** CPU seconds (user + system) of the mosquitto process started with this config directory. */
function brokerCpu(dir: string): number {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!cmd.includes(dir)) continue;
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      // A process that ended meanwhile.
    }
  }
  return Number.NaN;
}

const newDevice = () => ({ deviceId: randomUUID(), credential: randomBytes(32).toString('base64url') });
const list = Array.from({ length: devices }, newDevice);
const already = Array.from({ length: prewritten }, newDevice);
const alreadyFile = { clients: already.map((d) => deviceClient(d.deviceId, d.credential)), roles: already.map((d) => deviceRole(d.deviceId)) };

for (const batch of batches) {
  const broker = await startMosquitto({ dynsec: { admin: ADMIN, ...alreadyFile }, extra: ['log_type none'] });
  const accounts = await DynsecAccounts.connect({
    url: broker.url,
    username: ADMIN.username,
    password: ADMIN.password,
    batchCommands: batch,
    maxMessageBytes: 1_000_000,
    timeoutMs: 600_000,
  });
  try {
    const cpu0 = brokerCpu(broker.dir);
    let t = performance.now();
    await accounts.provision(list);
    const provisionMs = performance.now() - t;
    const cpu1 = brokerCpu(broker.dir);
    const fileBytes = statSync(join(broker.dir, 'dynamic-security.json')).size;
    t = performance.now();
    const r = await accounts.reconcile([...already, ...list].map((d) => d.deviceId), () => undefined);
    const reconcileMs = performance.now() - t;
    let removeMs = Number.NaN;
    if (!skipRemove) {
      t = performance.now();
      await accounts.remove(list.map((d) => d.deviceId));
      removeMs = performance.now() - t;
    }
    console.log(JSON.stringify({
      devices,
      prewritten,
      commandsPerMessage: batch,
      provisionMs: Math.round(provisionMs),
      devicesPerSec: Math.round(devices / (provisionMs / 1000)),
      brokerCpuSec: Number((cpu1 - cpu0).toFixed(2)),
      fileBytes,
      reconcileNoopMs: Math.round(reconcileMs),
      reconcile: r,
      removeMs: Math.round(removeMs),
    }));
  } finally {
    await accounts.close();
    await broker.close();
  }
}

// The other way for a broker that starts with many devices: its file written before the start.
if (prewritten === 0) {
  let t = performance.now();
  const file = channelDynsecFile(ADMIN, { password: 'server' }, list);
  const text = JSON.stringify(file);
  const writeMs = performance.now() - t;
  t = performance.now();
  const broker = await startMosquitto({ dynsec: { admin: ADMIN }, extra: ['log_type none'] });
  await broker.stop();
  writeFileSync(join(broker.dir, 'dynamic-security.json'), text);
  t = performance.now();
  await broker.restart();
  const startMs = performance.now() - t;
  const accounts = await DynsecAccounts.connect({ url: broker.url, username: ADMIN.username, password: ADMIN.password });
  const clients = (await accounts.listClients()).length;
  await accounts.close();
  await broker.close();
  console.log(JSON.stringify({
    devices,
    prewrittenFile: true,
    buildFileMs: Math.round(writeMs),
    fileBytes: text.length,
    brokerStartMs: Math.round(startMs),
    clients,
  }));
}
