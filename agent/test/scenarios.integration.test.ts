import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { type MosquittoBroker, MOSQUITTO_MISSING, startMosquitto } from '../../server-stub/test/helpers/mosquitto.js';
import { readLocalStatus } from '../src/local-status.js';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { FakeServer } from './helpers/fake-server.js';
import { tempDir } from './helpers/device.js';
import { illegalStep } from './helpers/job-states.js';
import { firmwareImage, makePacket, testProfile } from './helpers/packets.js';
import { type TestCerts, testCerts } from './helpers/pki.js';
import { buildBundle, Supervisor } from './helpers/process.js';

/*
 * Power loss in every update state, over each transport: a REAL agent process (`node agent/dist/cli.js run`, emulated
 * platform on disk) loses power (SIGKILL, injected at a fault point) in each update state, is
 * started again (a reboot exit 75 is restarted too, as the supervisor does) and must continue or
 * roll back, never half-apply, and the fake server must see one legal sequence of states and
 * exactly one terminal result.
 */

let certs: TestCerts;
let server: FakeServer;
let broker: MosquittoBroker | undefined;
let bundle: string;
const dirs: string[] = [];

const COMMON = [
  '--boot-delay-max-sec', '0',
  '--backoff-base-ms', '50',
  '--backoff-max-ms', '400',
  '--health-check-timeout-sec', '8',
  '--report-resend-sec', '1',
  '--staging-reserve-bytes', '0',
  '--download-sync-bytes', '16384',
  '--log-level', 'warn',
];

beforeAll(async () => {
  const bundleDir = await tempDir('bundle-');
  dirs.push(bundleDir);
  // The real agent process is the installable bundle (the bin in dist/ is exercised by cli.integration).
  bundle = buildBundle(join(bundleDir, 'fleet-agent.mjs'));
  certs = await testCerts();
  server = await new FakeServer({ certPem: certs.tlsServer.certPem, keyPem: certs.tlsServer.keyPem }).start();
  if (!MOSQUITTO_MISSING) {
    // The same fake server behind a real broker: devices whose profile names mqtts:// reach it there.
    broker = await startMosquitto({ tls: { certPem: certs.tlsServer.certPem, keyPem: certs.tlsServer.keyPem } });
    await server.useMqtt(broker.url);
  }
}, 120_000);
afterAll(async () => {
  await server.close();
  await broker?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
});

type Kind = 'firmware' | 'config';
interface Scenario {
  name: string;
  kind: Kind;
  /** Fault point where power is lost (first run only). */
  cut: string;
  /** Faults of every run. */
  faults?: string[];
  expect: 'succeeded' | 'failed';
  code?: string;
  /** Firmware: the slot committed at the end. */
  slot?: 'a' | 'b';
}

const SCENARIOS: Scenario[] = [
  { name: 'offered', kind: 'firmware', cut: 'update:offered', expect: 'succeeded', slot: 'b' },
  { name: 'downloading (before the first byte)', kind: 'firmware', cut: 'update:downloading', expect: 'succeeded', slot: 'b' },
  { name: 'downloading (half-way: resumes with Range)', kind: 'firmware', cut: 'download:partial', expect: 'succeeded', slot: 'b' },
  { name: 'verifying', kind: 'firmware', cut: 'update:verifying', expect: 'succeeded', slot: 'b' },
  { name: 'installing (nothing touched yet)', kind: 'firmware', cut: 'update:installing', expect: 'succeeded', slot: 'b' },
  { name: 'installing (slot written, trial set)', kind: 'firmware', cut: 'install:0:after', expect: 'failed', code: 'AGENT_INTERRUPTED', slot: 'a' },
  { name: 'rebooting', kind: 'firmware', cut: 'update:rebooting', expect: 'succeeded', slot: 'b' },
  { name: 'health-check (uncommitted trial lost: boot loader falls back)', kind: 'firmware', cut: 'update:health-check', expect: 'failed', code: 'AGENT_BOOT_FAILED', slot: 'a' },
  { name: 'committing', kind: 'firmware', cut: 'update:committing', expect: 'failed', code: 'AGENT_BOOT_FAILED', slot: 'a' },
  {
    name: 'rolling-back (after a failed health check)',
    kind: 'firmware',
    cut: 'update:rolling-back',
    faults: ['healthCheck.fail=true'],
    expect: 'failed',
    code: 'AGENT_HEALTH_CHECK_FAILED',
    slot: 'a',
  },
  { name: 'done (result journaled, not yet queued)', kind: 'firmware', cut: 'update:done', expect: 'succeeded', slot: 'b' },
  { name: 'config: installing (backup taken, profile applied)', kind: 'config', cut: 'install:0:after', expect: 'failed', code: 'AGENT_INTERRUPTED' },
  { name: 'config: health-check', kind: 'config', cut: 'update:health-check', expect: 'succeeded' },
];

type Transport = 'ws' | 'mqtt';
const TRANSPORTS: Transport[] = ['ws', 'mqtt'];

describe.concurrent('power cut (SIGKILL of the agent process) in each update state', () => {
  if (MOSQUITTO_MISSING) it.skip(`over MQTT: ${MOSQUITTO_MISSING}`, () => undefined);
  const cases = TRANSPORTS.flatMap((t) => SCENARIOS.map((s, i) => [`${t}: ${s.name}`, s, i, t] as const));
  it.for(cases.filter(([, , , t]) => t === 'ws' || !MOSQUITTO_MISSING))('%s', async ([, scenario, i, transport], { expect }) => {
    const deviceId = `kill-${transport}-${i}`;
    const dir = await tempDir('kill-');
    dirs.push(dir);
    const profile = testProfile({
      ...(transport === 'mqtt' ? { serverUrl: broker!.tlsUrl!, mqttVersion: 5 as const } : { serverUrl: server.url }),
      caCertPem: certs.tlsCa.certPem,
      trustAnchorsPem: [certs.pki.root.certPem],
      deviceId,
      serialNumber: `SN-${deviceId}`,
    });
    await mkdir(join(dir, 'agent'), { recursive: true });
    await writeFile(join(dir, 'agent', 'connection-profile.json'), JSON.stringify(profile), { mode: 0o600 });
    const packet =
      scenario.kind === 'firmware'
        ? await makePacket(certs.pki.signer, [
            { name: 'autoupdate-2.0.0-full.arm64.tar', fileType: 'FirmwareFull', data: firmwareImage('2.0.0', 512 * 1024), version: '2.0.0' },
          ])
        : await makePacket(certs.pki.signer, [{ name: 'site.cfg', fileType: 'ConfigurationProfile', data: 'hostname=site-9\nuplink=up\n', version: '9' }]);
    const packetName = `kill-${transport}-${i}.tar`;
    server.addPacket(packetName, packet);
    const faults = (scenario.faults ?? []).flatMap((f) => ['--fault', f]);
    const supervisor = new Supervisor(dir, [...COMMON, ...faults, '--fault', `powerCutAt=${scenario.cut}`], [...COMMON, ...faults], bundle);
    supervisor.start();
    try {
      await server.waitFor(() => server.received('status', deviceId)[0], 20_000, `${deviceId} online`);
      const executionId = `exe-kill-${transport}-${i}`;
      server.offer(deviceId, executionId, packetName);
      const terminal = await server.waitForTerminal(executionId, 40_000);
      // Count only once the agent has nothing left to report (no job in progress, every result
      // acknowledged by the server): resends and late duplicates have arrived by then.
      await waitFor(async () => {
        const s = (await readLocalStatus(dir)) as { activeJob: unknown; unacknowledgedResults: number };
        return s.activeJob === null && s.unacknowledgedResults === 0;
      }, { timeout: 30_000, what: `${deviceId} with nothing left to report` });
      expect(supervisor.exits.some((e) => e.signal === 'SIGKILL'), 'the power cut happened').toBe(true);
      expect(server.terminals(executionId)).toHaveLength(1);
      expect(terminal.body.state).toBe(scenario.expect);
      if (scenario.code) expect(terminal.body.errorCode).toBe(scenario.code);
      expect(illegalStep(server.progress(executionId))).toBeUndefined();
      if (scenario.cut === 'download:partial') {
        expect(server.downloads.some((d) => d.name === packetName && d.range !== undefined && d.status === 206)).toBe(true);
      }
      const local = (await readLocalStatus(dir)) as {
        firmware: { booted: string; committed: string; versions: Record<string, string | undefined> };
        activeJob: unknown;
        unacknowledgedResults: number;
      };
      expect(local.activeJob).toBeNull();
      if (scenario.slot) {
        expect(local.firmware.booted).toBe(scenario.slot);
        expect(local.firmware.committed).toBe(scenario.slot);
        expect(local.firmware.versions[scenario.slot]).toBe(scenario.slot === 'b' ? '2.0.0' : '1.0.0');
      }
      if (scenario.kind === 'config') {
        const hello = server.received('hello', deviceId).at(-1)!;
        // The status the agent sends once the configuration is applied, or restored, may follow the result.
        const version = scenario.expect === 'succeeded' ? '9' : undefined;
        await server.waitFor(() => server.received('status', deviceId).at(-1)?.body.configurationVersion === version || undefined, 20_000, 'the status after the configuration');
        const status = server.received('status', deviceId).at(-1)!;
        expect(hello.body.firmwareVersion).toBe('1.0.0');
        if (scenario.expect === 'succeeded') expect(status.body.configurationVersion).toBe('9');
        else expect(status.body.configurationVersion).toBeUndefined();
      }
    } finally {
      await supervisor.stop();
    }
  });
});
