import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type CertificateAndKey, createCa, issueCertificate } from '@router-fleet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../../server-stub/test/helpers/mosquitto.js';
import { tempDir } from './device.js';
import { firmwareImage, sha256 } from './packets.js';
import { CLI, ensureBuilt } from './process.js';
import { Api, SERVER_CLI, ServerProcess, serverCli, waitFor } from './reference-server.js';

/*
 * Update delivery end to end with the REAL reference server: `fleet-server` (server-stub/dist)
 * and `fleet-agent` (agent/dist, self-supervised) run as separate processes and meet only over
 * HTTPS and WSS with a TLS CA made by `fleet-server tls generate`. A provisioned agent is admitted;
 * a packet with firmware, configuration, certificates and a container is built on the server,
 * applied by the agent (with an emulated reboot) and the server shows success; then the server
 * restarts and the agent reconnects with its jittered backoff and carries on without re-applying.
 */

const execFileAsync = promisify(execFile);

const USER = 'admin';
const PASSWORD = 'a long e2e secret';
const SERIAL = 'E2E-ROUTER-0001';
const MODEL = 'EMU-1';
const NEW_FIRMWARE = '2.0.0';
const CONFIG_TEXT = 'hostname=e2e-router\nuplink=up\nntp=pool.ntp.org\n';
const CONFIG_VERSION = 'cfg-7';
const CONTAINER_IMAGE = Buffer.from('emulated container image webapp 1.2.0\n'.repeat(64));

// Short timings so the whole flow stays well under a minute.
const AGENT_FLAGS = [
  '--boot-delay-max-sec', '0',
  '--backoff-base-ms', '400',
  '--backoff-max-ms', '3000',
  '--health-check-timeout-sec', '30',
  '--report-resend-sec', '2',
  '--staging-reserve-bytes', '0',
  '--log-level', 'debug',
];
const BASE_SERVER_FLAGS = ['--presence-flush-ms', '100', '--channel-sweep-ms', '200', '--log-level', 'info'];

interface LogLine {
  time: number;
  msg: string;
  [key: string]: unknown;
}

/** `fleet-agent run` (supervised, as shipped) in its own process group, logs (stderr, pino JSON) kept. */
class AgentProcess {
  readonly child: ChildProcess;
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly lines: LogLine[] = [];
  #partial = '';
  #raw = '';

  constructor(dataDir: string, args: string[]) {
    this.child = spawn(process.execPath, [CLI, 'run', '--data', dataDir, ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
    });
    this.child.stderr!.on('data', (d: Buffer) => {
      const text = this.#partial + d.toString();
      this.#raw = (this.#raw + d.toString()).slice(-300_000);
      const parts = text.split('\n');
      this.#partial = parts.pop()!;
      for (const part of parts) {
        try {
          this.lines.push(JSON.parse(part) as LogLine);
        } catch {
          // not a log line
        }
      }
    });
    this.exit = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  raw(): string {
    return this.#raw;
  }

  /** Signals the whole group (the supervisor and its agent child). */
  signal(signal: NodeJS.Signals): void {
    try {
      process.kill(-this.child.pid!, signal);
    } catch {
      // already gone
    }
  }
}

/**
 * The suite over one control-channel transport: `ws` (the server's WebSocket endpoint) or `mqtt`
 * (the server's embedded broker on a fixed port, named in the profile the server issues; a server
 * restart restarts the broker too).
 */
export function e2eSuite(transport: 'ws' | 'mqtt'): void {
  let SERVER_FLAGS = BASE_SERVER_FLAGS;
  let mqttPort = 0;
  const dirs: string[] = [];
  let serverDir: string;
  let agentDir: string;
  let tlsCa: string;
  let tlsFiles: { ca: string; cert: string; key: string };
  let server: ServerProcess | undefined;
  let agent: AgentProcess | undefined;
  let api: Api;
  let port: number;
  let deviceUuid: string;
  let jobUuid: string;
  let packetUuid: string;
  let certs: { root: CertificateAndKey; leaf: CertificateAndKey };

  async function device(): Promise<{ status: string; admission: string | null; firmware: string | null; connectedAt: string | null; model: string | null }> {
    return api.json('GET', `/api/inventory/managed-devices/${deviceUuid}`);
  }

  async function localStatus(): Promise<{
    firmware: { booted: string; committed: string; bootCount: number; versions: Record<string, string | undefined> };
    activeJob: unknown;
    unacknowledgedResults: number;
    recentJobs: { executionId: string; state: string; packetSha256: string }[];
  }> {
    const { stdout } = await execFileAsync(process.execPath, [CLI, 'status', '--data', agentDir], { timeout: 20_000 });
    return JSON.parse(stdout) as never;
  }

  const readJson = async <T>(path: string): Promise<T> => JSON.parse(await readFile(path, 'utf8')) as T;

  beforeAll(async () => {
    await ensureBuilt();
    if (!existsSync(SERVER_CLI)) throw new Error(`${SERVER_CLI} is missing: run \`npx tsc -b\` first`);
    serverDir = await tempDir('e2e-server-');
    agentDir = await tempDir('e2e-agent-');
    dirs.push(serverDir, agentDir);
    // Offline setup with the server's own CLI (local TLS, the account, a licence code) while the
    // device certificates for the packet are generated.
    const [tls, code, root] = await Promise.all([
      serverCli(['tls', 'generate', '--data', serverDir, '--host', 'localhost', '--ip', '127.0.0.1']),
      (async () => {
        await serverCli(['account', 'create', '--data', serverDir, '--name', 'E2E Networks', '--user', USER, '--password', PASSWORD]);
        return (await serverCli(['licences', 'issue', '--data', serverDir, '--plan', 'basic-25', '--count', '1'])).trim();
      })(),
      createCa({ commonName: 'E2E Device Root CA', keyBits: 2048 }),
    ]);
    tlsFiles = JSON.parse(tls) as never;
    tlsCa = await readFile(tlsFiles.ca, 'utf8');
    expect(code).toMatch(/\S/);
    const leaf = await issueCertificate({ commonName: 'e2e-router.example', issuer: root, keyBits: 2048, extKeyUsage: ['clientAuth'] });
    certs = { root, leaf };

    if (transport === 'mqtt') {
      // A fixed broker port: the profile names it, and the restart below must come back on it.
      mqttPort = await freePort();
      SERVER_FLAGS = [...BASE_SERVER_FLAGS, '--mqtt', 'embedded', '--mqtt-port', String(mqttPort), '--device-transport', 'mqtt'];
    }
    server = await ServerProcess.start({ dataDir: serverDir, port: 0, tls: { cert: tlsFiles.cert, key: tlsFiles.key }, args: SERVER_FLAGS });
    port = Number(new URL(server.url).port);
    api = new Api(server.url, tlsCa);
    await api.login(USER, PASSWORD);
    const licence = await api.json<{ uuid: string; status: string }>('POST', '/api/licences/redeem', { code });
    expect(licence.status).toBe('available');
    const active = await api.json<{ status: string; kind: string }>('POST', `/api/licences/${licence.uuid}/activate`, {});
    expect(active).toMatchObject({ status: 'active', kind: 'basic-25' });
  }, 180_000);

  afterAll(async () => {
    if (agent) {
      agent.signal('SIGTERM');
      const done = await Promise.race([agent.exit, new Promise((r) => setTimeout(r, 5000, 'timeout'))]);
      if (done === 'timeout') agent.signal('SIGKILL');
    }
    if (server) {
      server.child.kill('SIGTERM');
      const done = await Promise.race([server.exit, new Promise((r) => setTimeout(r, 5000, 'timeout'))]);
      if (done === 'timeout') server.kill();
    }
    agent?.signal('SIGKILL');
    server?.kill();
    await api?.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  describe(`end to end with the reference server (${transport === 'ws' ? 'wss' : 'MQTT through its embedded broker'}, real processes)`, () => {
    it('a provisioned agent is admitted: the server shows it online and managed', async () => {
      expect(server!.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const registered = await api.json<{ uuid: string; status: string }>('POST', '/api/inventory/managed-devices', {
        serialNumber: SERIAL,
        name: 'e2e router',
      });
      deviceUuid = registered.uuid;
      expect(registered.status).toBe('offline');

      const profile = await api.call('GET', `/api/inventory/managed-devices/${deviceUuid}/connection-profile?format=update-packet`);
      expect(profile.status).toBe(200);
      const profilePath = join(agentDir, '..', `${SERIAL}-profile.tar`);
      await writeFile(profilePath, profile.body);
      dirs.push(profilePath);
      // Pin the server's packet-signing root instead of trusting the first profile blindly.
      const provisioned = await execFileAsync(
        process.execPath,
        [CLI, 'provision', profilePath, '--data', agentDir, '--trust-anchor', join(serverDir, 'signing', 'trust-anchors.pem')],
        { timeout: 20_000 },
      );
      const result = JSON.parse(provisioned.stdout) as { provisioned: boolean; deviceId: string; serverUrl: string; trust: string };
      expect(result).toMatchObject({ provisioned: true, deviceId: deviceUuid, serverUrl: transport === 'ws' ? `wss://127.0.0.1:${port}/api/channel` : `mqtts://127.0.0.1:${mqttPort}` });

      agent = new AgentProcess(agentDir, AGENT_FLAGS);
      const online = await waitFor(
        'the device online and managed',
        async () => {
          const d = await device();
          return d.status === 'online' && d.admission === 'managed' ? d : undefined;
        },
        15_000,
        100,
        () => `agent log:\n${agent!.raw().slice(-4000)}`,
      );
      expect(online.connectedAt).not.toBeNull();
      const status = await waitFor(
        'the hello and status summaries',
        async () => {
          const s = await api.json<{ hello: Record<string, unknown> | null; status: Record<string, unknown> | null }>(
            'GET',
            `/api/inventory/managed-devices/${deviceUuid}/status`,
          );
          return s.hello && s.status ? s : undefined;
        },
        10_000,
      );
      expect(status.hello).toMatchObject({ model: MODEL, firmwareVersion: '1.0.0' });
      expect(status.status).toMatchObject({ firmwareVersion: '1.0.0' });
    }, 30_000);

    it('a packet with firmware, configuration, certificates and a container is applied; the server shows success', async () => {
      const image = firmwareImage(NEW_FIRMWARE, 64 * 1024);
      const packet = await api.json<{ uuid: string; signed: boolean; sections: { fileType: string }[] }>('POST', '/api/packets/build', {
        name: 'e2e bundle',
        targetModels: [MODEL],
        components: [
          { kind: 'firmware', fileName: 'firmware-2.0.0.img', data: image.toString('base64'), version: NEW_FIRMWARE },
          { kind: 'configuration-profile', fileName: 'router.conf', text: CONFIG_TEXT, version: CONFIG_VERSION },
          { kind: 'ca-certificate', fileName: 'e2e-root.pem', text: certs.root.certPem },
          { kind: 'certificate', fileName: 'e2e-leaf.pem', text: `${certs.leaf.certPem}${certs.leaf.keyPem}` },
          { kind: 'container', fileName: 'webapp-1.2.0.tar', data: CONTAINER_IMAGE.toString('base64'), version: '1.2.0' },
        ],
      });
      packetUuid = packet.uuid;
      expect(packet.signed).toBe(true);
      expect(packet.sections.map((s) => s.fileType).sort()).toEqual(
        ['CaCertificate', 'Certificate', 'ConfigurationProfile', 'Container', 'FirmwareFull'].sort(),
      );

      const job = await api.json<{ uuid: string; state: string }>('POST', '/api/jobs', {
        name: 'e2e update',
        packetUuid,
        target: { deviceUuids: [deviceUuid] },
        options: { timeoutSec: 120 },
      });
      jobUuid = job.uuid;
      expect(job.state).toBe('running');

      type JobView = { state: string; progress: { percentComplete: number; results: Record<string, number>; devices: { total: number; done: number } } };
      const done = await waitFor(
        'the job to finish',
        async () => {
          const j = await api.json<JobView>('GET', `/api/jobs/${jobUuid}`);
          return j.state !== 'running' ? j : undefined;
        },
        40_000,
        200,
        async () => `job devices: ${JSON.stringify(await api.json('GET', `/api/jobs/${jobUuid}/devices`))}\nagent log:\n${agent!.raw().slice(-6000)}`,
      );
      expect(done.state).toBe('finished');
      expect(done.progress.percentComplete).toBe(100);
      expect(done.progress.devices).toMatchObject({ total: 1, done: 1 });
      expect(done.progress.results).toMatchObject({ succeeded: 1, failed: 0 });
      type DeviceResult = { deviceUuid: string; status: string; result: string; state: string; attempts: number; errorCode: string | null };
      const perDevice = await api.json<{ items: DeviceResult[] }>('GET', `/api/jobs/${jobUuid}/devices`);
      expect(perDevice.items).toHaveLength(1);
      expect(perDevice.items[0]).toMatchObject({ deviceUuid, status: 'done', result: 'succeeded', state: 'succeeded', attempts: 1, errorCode: null });

      // Status ingestion: the firmware the device reports after its reboot is what the inventory shows.
      const updated = await waitFor(
        `the inventory to show firmware ${NEW_FIRMWARE}`,
        async () => {
          const d = await device();
          return d.firmware === NEW_FIRMWARE ? d : undefined;
        },
        10_000,
      );
      expect(updated).toMatchObject({ status: 'online', admission: 'managed' });

      // The emulated router on disk: new slot booted and committed, configuration, certificates, container.
      const local = await localStatus();
      expect(local.firmware).toMatchObject({ booted: 'b', committed: 'b', versions: { a: '1.0.0', b: NEW_FIRMWARE } });
      expect(local.firmware.bootCount).toBe(2); // one emulated reboot into the new firmware
      expect(local.activeJob).toBeNull();
      expect(local.recentJobs).toHaveLength(1);
      expect(local.recentJobs[0]!.state).toBe('succeeded');
      // Applied exactly once across both boots: one acceptance, one result (a redelivered offer after
      // the reboot must be answered from the journal, never started as a second execution).
      const jobLines = (msg: string) => agent!.lines.filter((l) => l.msg === msg && l.executionId === local.recentJobs[0]!.executionId);
      expect(jobLines('resuming job')).toHaveLength(1);
      expect(jobLines('job accepted')).toHaveLength(1);
      expect(jobLines('job finished').map((l) => l.state)).toEqual(['succeeded']);
      const slotA = await readJson<{ version: string }>(join(agentDir, 'device', 'slot-a.json'));
      expect(slotA.version).toBe('1.0.0'); // the fallback slot is untouched
      const slotB = await readFile(join(agentDir, 'device', 'slot-b.img'));
      expect(sha256(slotB)).toBe(sha256(image));

      const running = await readJson<{ version?: string; content: string }>(join(agentDir, 'device', 'config-running.json'));
      expect(running.version).toBe(CONFIG_VERSION);
      expect(Buffer.from(running.content, 'base64').toString('utf8')).toBe(CONFIG_TEXT);

      const stored = await readJson<{ name: string; certPem: string; keyPem?: string; isCa: boolean }[]>(join(agentDir, 'device', 'certificates.json'));
      const byName = new Map(stored.map((c) => [c.name, c]));
      expect(byName.get('e2e-root')).toMatchObject({ isCa: true });
      expect(byName.get('e2e-root')!.certPem.trim()).toBe(certs.root.certPem.trim());
      expect(byName.get('e2e-leaf')).toMatchObject({ isCa: false });
      expect(byName.get('e2e-leaf')!.certPem.trim()).toBe(certs.leaf.certPem.trim());
      expect(byName.get('e2e-leaf')!.keyPem).toBeDefined();

      const containers = await readJson<Record<string, { name: string; version: string; images: string[]; state: string }>>(
        join(agentDir, 'device', 'containers.json'),
      );
      expect(containers.webapp).toMatchObject({ name: 'webapp', version: '1.2.0', images: ['1.2.0'] });
      expect(await readFile(join(agentDir, 'device', 'containers', 'webapp', '1.2.0.img'))).toEqual(CONTAINER_IMAGE);
    }, 50_000);

    it('the server restarts: the agent reconnects with jittered backoff and carries on without re-applying', async () => {
      const before = await device();
      const localBefore = await localStatus();
      const executionId = localBefore.recentJobs[0]!.executionId;

      const linesBefore = agent!.lines.length;
      const stoppedAt = Date.now();
      const stopped = await server!.stop();
      expect(stopped.code).toBe(0);
      const stopMs = Date.now() - stoppedAt;
      await waitFor('the agent to notice the closed channel', async () => agent!.lines.slice(linesBefore).some((l) => l.msg === 'channel closed'), 10_000, 50);

      server = await ServerProcess.start({ dataDir: serverDir, port, tls: { cert: tlsFiles.cert, key: tlsFiles.key }, args: SERVER_FLAGS });
      const listeningAt = Date.now();
      expect(server.url).toBe(`https://127.0.0.1:${port}`);
      await api.close();
      api = new Api(server.url, tlsCa);
      await api.login(USER, PASSWORD);

      // Online again on a NEW connection (connectedAt after the restart), not a stale row.
      const back = await waitFor(
        'the device online again after the restart',
        async () => {
          const d = await device();
          return d.status === 'online' && d.admission === 'managed' && d.connectedAt !== null && Date.parse(d.connectedAt) >= stoppedAt ? d : undefined;
        },
        20_000,
        100,
        () => `agent log:\n${agent!.raw().slice(-4000)}\nserver log:\n${server!.log().slice(-4000)}`,
      );
      const onlineAt = Date.now();
      // The server counts the device online when it admits the hello; the agent is managed when the
      // welcome reaches it, later (through the broker, noticeably): wait for its own log line.
      await waitFor(
        'the agent managed again after the restart',
        async () => {
          const since = agent!.lines.slice(linesBefore);
          const closedAt = since.find((l) => l.msg === 'channel closed')?.time;
          return closedAt !== undefined && since.some((l) => l.msg === 'session transition' && l.to === 'managed' && l.time >= closedAt) ? true : undefined;
        },
        20_000,
        50,
      );
      expect(Date.parse(back.connectedAt!)).toBeGreaterThan(Date.parse(before.connectedAt!));
      expect(back.firmware).toBe(NEW_FIRMWARE);

      // The agent's side of the reconnect, from its own log: closed → waits (full jitter) → managed.
      const after = agent!.lines.slice(linesBefore);
      const closed = after.find((l) => l.msg === 'channel closed')!;
      const managed = after.find((l) => l.msg === 'session transition' && l.to === 'managed' && l.time >= closed.time);
      expect(managed).toBeDefined();
      const firstDial = after.find((l) => l.msg === 'session transition' && l.from === 'backing-off' && l.time >= closed.time);
      const failedDials = after.filter((l) => l.msg === 'connect failed').map((l) => l.delayMs as number);
      // Full jitter: every drawn wait lies in [0, backoffMaxMs] and they are not all the same.
      for (const delay of failedDials) expect(delay).toBeGreaterThanOrEqual(0);
      for (const delay of failedDials) expect(delay).toBeLessThanOrEqual(3000);
      if (failedDials.length > 1) expect(new Set(failedDials).size).toBeGreaterThan(1);
      console.log(
        `[e2e] reconnect after server restart: agent saw the close → managed in ${managed!.time - closed.time} ms `
        + `(first jittered wait ${firstDial ? firstDial.time - closed.time : '?'} ms, failed dials ${failedDials.length} with waits [${failedDials.join(', ')}] ms); `
        + `server down ${listeningAt - stoppedAt} ms (graceful stop ${stopMs} ms); device online ${onlineAt - listeningAt} ms after the server listened`,
      );

      // Carries on: the job stays succeeded, nothing is re-applied, no second reboot. What the server
      // sends a reconnected device (offers of executions it holds open) goes out right after the
      // welcome; the status the agent sends after the welcome is stored later (presence flush), so
      // once it is stored a (wrong) redelivery would have reached the agent.
      await waitFor('the status the agent reported after the reconnect', async () => {
        const s = await api.json<{ statusAt: string | null }>('GET', `/api/inventory/managed-devices/${deviceUuid}/status`);
        return s.statusAt !== null && Date.parse(s.statusAt) >= Date.parse(back.connectedAt!) ? true : undefined;
      }, 20_000);
      const job = await api.json<{ state: string; progress: { results: Record<string, number> } }>('GET', `/api/jobs/${jobUuid}`);
      expect(job.state).toBe('finished');
      expect(job.progress.results).toMatchObject({ succeeded: 1, failed: 0 });
      const perDevice = await api.json<{ items: { result: string; attempts: number; executionId: string }[] }>('GET', `/api/jobs/${jobUuid}/devices`);
      expect(perDevice.items[0]).toMatchObject({ result: 'succeeded', attempts: 1 });
      const localAfter = await localStatus();
      expect(localAfter.recentJobs).toHaveLength(1);
      expect(localAfter.recentJobs[0]).toMatchObject({ executionId, state: 'succeeded' });
      expect(localAfter.firmware).toMatchObject({ booted: 'b', committed: 'b', bootCount: localBefore.firmware.bootCount });
      expect(localAfter.activeJob).toBeNull();
      expect(agent!.lines.slice(linesBefore).filter((l) => l.msg === 'job accepted')).toHaveLength(0);
      expect(agent!.child.exitCode).toBeNull();
    }, 40_000);
  });
}
