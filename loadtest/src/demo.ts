#!/usr/bin/env node
/**
 * `npm run demo`: the whole system on one machine in about a minute. A reference server with its
 * embedded SQLite in a temporary directory (TLS from a local CA), an account on the Free plan
 * (1,000 devices), a 1,200-router fleet of real agent cores (1,000 admitted, 200 rejected: first
 * come, first served), a firmware + configuration job with live progress, the dashboard summary
 * and where to look. Ctrl-C stops it cleanly; `--once` ends by itself. `--transport mqtt`: the
 * routers reach the server over MQTT through its embedded broker (mqtts, nothing to install).
 */
import { Buffer } from 'node:buffer';
import { rmSync } from 'node:fs';
import { createJob, type FleetHandle, getJob, reached, startFleet } from '@router-fleet/simulator';
import type { ServerProcess } from './local-server.js';
import { stage } from './stage.js';
const once = process.argv.includes('--once');
/** `--transport ws` (default) or `--transport mqtt` (also `--transport=mqtt`). */
function transportArg(argv: string[]): 'ws' | 'mqtt' {
  const i = argv.findIndex((a) => a === '--transport' || a.startsWith('--transport='));
  if (i < 0) return 'ws';
  const value = argv[i]!.includes('=') ? argv[i]!.slice('--transport='.length) : argv[i + 1];
  if (value !== 'ws' && value !== 'mqtt') {
    console.error(`demo: --transport must be ws or mqtt (got ${value === undefined ? 'nothing' : JSON.stringify(value)})`);
    process.exit(2);
  }
  return value;
}
const transport = transportArg(process.argv.slice(2));
const DEVICES = 1200;
const say = (text: string) => console.log(`\u001b[1m▸\u001b[0m ${text}`);
const tty = process.stdout.isTTY;
const line = (text: string) => (tty ? process.stdout.write(`\r\u001b[2K  ${text}`) : console.log(`  ${text}`));

async function main(): Promise<void> {
  const started = Date.now();
  let dataDir: string | undefined;
  let server: ServerProcess | undefined;
  let fleet: FleetHandle | undefined;
  let stopping = false;
  const stop = async (code = 0) => {
    if (stopping) return;
    stopping = true;
    if (tty) process.stdout.write('\n');
    say('stopping: routers, then the server');
    await fleet?.stop().catch(() => undefined);
    await server?.stop().catch(() => undefined);
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    say(`done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    process.exit(code);
  };
  process.once('SIGINT', () => void stop(0));
  process.once('SIGTERM', () => void stop(0));
  try {
    const st = await stage({
      devices: DEVICES,
      name: 'Demo Water Works',
      plan: 'free',
      licences: 1,
      // The embedded broker: MQTT 3.1.1 over TLS with the server's certificate, on a free port.
      ...(transport === 'mqtt' ? { serverArgs: ['--mqtt', 'embedded', '--mqtt-port', '0', '--device-transport', 'mqtt'] } : {}),
      log: say,
    });
    dataDir = st.dataDir;
    server = st.server;
    const rest = st.rest;
    const tenant = st.tenant;
    say(`server data in ${dataDir} (embedded SQLite, nothing else to install); account "Demo Water Works" on the Free plan`);

    fleet = await startFleet({ profiles: st.profilesDir, devices: DEVICES, rate: 400, processes: 1, behaviour: 'ideal', seed: 2026, transport });
    say(`starting ${DEVICES} virtual routers (each the real agent core) at 400 connects/s${transport === 'mqtt' ? ', over MQTT through the server\'s embedded broker' : ''}`);
    const admitted = await fleet.waitFor((s) => {
      line(`connected ${s.connected}  managed ${s.managed}  rejected ${s.rejected}  backing off ${s.backingOff}`);
      return s.managed === 1000 && s.rejected + s.backingOff >= DEVICES - 1000;
    }, 90_000);
    if (tty) process.stdout.write('\n');
    say(`${admitted.managed} routers managed, ${DEVICES - admitted.managed} rejected: the Free plan admits 1,000, first come, first served`);

    const config = `# demo configuration 2\nhostname=plant-router\nntp=pool.ntp.org\nuplink=up\n`;
    const image = Buffer.alloc(32 * 1024, 0x5a);
    const packet = await rest.json<{ uuid: string }>('POST', '/api/packets/build', {
      name: 'Firmware 10.5.0 + configuration 2',
      components: [
        { kind: 'firmware', fileName: 'autoupdate-10.5.0-full.arm64.tar', data: image.toString('base64'), version: '10.5.0' },
        { kind: 'configuration-profile', fileName: 'profile-2.cfg', text: config, version: '2' },
      ],
    });
    const managedIds = async () => (await fleet!.details()).filter((d) => d.admission === 'managed').map((d) => d.deviceId);
    fleet.jobCreated();
    const job = await createJob(rest, { packetUuid: packet.uuid, name: 'Firmware 10.5.0 + configuration 2' }, managedIds);
    say('update job created: firmware 10.5.0 + configuration profile 2, signed by the server, to every managed router');
    for (;;) {
      const j = await getJob(rest, job.uuid);
      const r = j.progress.results as Record<string, number>;
      line(`job ${j.progress.percentComplete.toFixed(0).padStart(3)} %  succeeded ${r['succeeded'] ?? 0}  failed ${r['failed'] ?? 0}  state ${j.state}`);
      if (reached(j, 100) || ['finished', 'cancelled', 'aborted'].includes(j.state)) break;
      await new Promise((res) => setTimeout(res, 1000));
    }
    if (tty) process.stdout.write('\n');

    // Presence and reported status reach the store in batches: give the last rebooted routers'
    // reports a moment to land, so the summary shows the fleet as it now is.
    type FirmwareRows = { items?: { firmware: string; count: number }[] };
    let status: Record<string, unknown> = {};
    let firmware: FirmwareRows = {};
    for (let i = 0; i < 30; i++) {
      status = await rest.json<Record<string, unknown>>('GET', '/api/dashboard/status');
      firmware = await rest.json<FirmwareRows>('GET', '/api/dashboard/firmware');
      const updated = (firmware.items ?? []).find((f) => f.firmware === '10.5.0')?.count ?? 0;
      if (status['online'] === admitted.managed && updated === admitted.managed) break;
      await new Promise((res) => setTimeout(res, 500));
    }
    const types = await rest.json<{ items?: { model: string; count: number }[] }>('GET', '/api/dashboard/device-types');
    say('dashboard');
    console.log(`  status        ${JSON.stringify(status)}`);
    console.log(`  firmware      ${JSON.stringify(firmware.items ?? firmware).slice(0, 300)}`);
    console.log(`  device types  ${JSON.stringify(types.items ?? types).slice(0, 300)}`);
    say('where to look');
    console.log(`  console       ${server.url}/   (the fleet live: dashboard, devices, jobs; log in with the login below)`);
    console.log(`  API docs      ${server.url}/docs   (OpenAPI: ${server.url}/openapi.json)`);
    console.log(`  metrics       ${server.url}/metrics`);
    console.log(`  login         ${tenant.username} / ${tenant.password}   (CA: ${st.caPath}; the server uses a local CA)`);
    if (once) return stop(0);
    say('running; Ctrl-C stops the routers and the server');
    setInterval(() => {
      const s = fleet!.stats();
      line(`connected ${s.connected}  managed ${s.managed}  rejected ${s.rejected}  backing off ${s.backingOff}`);
    }, 2000);
  } catch (err) {
    console.error(`\ndemo failed: ${(err as Error).stack ?? err}`);
    await stop(1);
  }
}

void main();
