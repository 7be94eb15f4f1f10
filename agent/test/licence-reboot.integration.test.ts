import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from './helpers/device.js';
import { firmwareImage } from './helpers/packets.js';
import { CLI, ensureBuilt } from './helpers/process.js';
import { Api, SERVER_CLI, ServerProcess, serverCli, waitFor } from './helpers/reference-server.js';

/*
 * A firmware update whose reboot outlasts the lease grace period, against the REAL reference server
 * with one seat and a second router waiting for it:
 * - the updating router keeps its seat until the job's reboot timeout, comes back managed and the
 *   update succeeds (the waiting router does not get the seat meanwhile);
 * - with a reboot timeout shorter than the reboot the seat goes to the waiting router, and the
 *   updating router, rejected for want of a licence, still passes its health check: it reached the
 *   server and was authenticated, so working firmware is not rolled back.
 */

const execFileAsync = promisify(execFile);
const USER = 'admin';
const PASSWORD = 'a long reboot secret';
const MODEL = 'EMU-1';
const REBOOT_MS = 6000;
const AGENT_FLAGS = [
  '--boot-delay-max-sec', '0',
  '--backoff-base-ms', '300',
  '--backoff-max-ms', '1500',
  '--health-check-timeout-sec', '40',
  '--report-resend-sec', '2',
  '--staging-reserve-bytes', '0',
  '--rejected-default-wait-sec', '1',
  '--log-level', 'info',
];
// A lease grace (1 s) far shorter than the reboot (6 s); the waiting router retries every second.
const SERVER_FLAGS = [
  '--lease-grace-sec', '1',
  '--admission-retry-after-sec', '1',
  '--sweep-interval-sec', '1',
  '--presence-flush-ms', '100',
  '--channel-sweep-ms', '200',
  '--log-level', 'info',
];

class AgentProcess {
  readonly child: ChildProcess;
  readonly exit: Promise<unknown>;
  #raw = '';

  constructor(dataDir: string, args: string[]) {
    this.child = spawn(process.execPath, [CLI, 'run', '--data', dataDir, ...args], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    this.child.stderr!.on('data', (d: Buffer) => {
      this.#raw = (this.#raw + d.toString()).slice(-200_000);
    });
    this.exit = new Promise((resolve) => this.child.once('exit', resolve));
  }

  raw(): string {
    return this.#raw;
  }

  async stop(): Promise<void> {
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      try {
        process.kill(-this.child.pid!, signal);
      } catch {
        return;
      }
      if ((await Promise.race([this.exit.then(() => 'exited'), new Promise((r) => setTimeout(r, 5000, 'timeout'))])) === 'exited') return;
    }
  }
}

const dirs: string[] = [];
const agents: AgentProcess[] = [];
let serverDir: string;
let server: ServerProcess | undefined;
let api: Api;
let tlsCa: string;
let packetUuid: string;

interface Router {
  uuid: string;
  dir: string;
}

async function device(uuid: string): Promise<{ status: string; admission: string | null; firmware: string | null }> {
  return api.json('GET', `/api/inventory/managed-devices/${uuid}`);
}

async function localStatus(dir: string): Promise<{ firmware: { booted: string; committed: string; bootCount: number }; recentJobs: { state: string }[] }> {
  const { stdout } = await execFileAsync(process.execPath, [CLI, 'status', '--data', dir], { timeout: 20_000 });
  return JSON.parse(stdout) as never;
}

async function router(serial: string): Promise<Router> {
  const registered = await api.json<{ uuid: string }>('POST', '/api/inventory/managed-devices', { serialNumber: serial, name: serial });
  const dir = await tempDir(`reboot-agent-${serial}-`);
  dirs.push(dir);
  const profile = await api.call('GET', `/api/inventory/managed-devices/${registered.uuid}/connection-profile?format=update-packet`);
  expect(profile.status).toBe(200);
  const profilePath = `${dir}-profile.tar`;
  await writeFile(profilePath, profile.body);
  dirs.push(profilePath);
  await execFileAsync(process.execPath, [CLI, 'provision', profilePath, '--data', dir, '--trust-anchor', join(serverDir, 'signing', 'trust-anchors.pem')], {
    timeout: 20_000,
  });
  return { uuid: registered.uuid, dir };
}

function start(r: Router, extra: string[] = []): AgentProcess {
  const a = new AgentProcess(r.dir, [...AGENT_FLAGS, ...extra]);
  agents.push(a);
  return a;
}

const until = <T>(what: string, fn: () => Promise<T | undefined>, logs: () => string, ms = 60_000) => waitFor(what, fn, ms, 200, logs);

beforeAll(async () => {
  await ensureBuilt();
  if (!existsSync(SERVER_CLI)) throw new Error(`${SERVER_CLI} is missing: run \`npx tsc -b\` first`);
  serverDir = await tempDir('reboot-server-');
  dirs.push(serverDir);
  const tls = JSON.parse(await serverCli(['tls', 'generate', '--data', serverDir, '--host', 'localhost', '--ip', '127.0.0.1'])) as {
    ca: string;
    cert: string;
    key: string;
  };
  await serverCli(['account', 'create', '--data', serverDir, '--name', 'Reboot Works', '--user', USER, '--password', PASSWORD]);
  const code = (await serverCli(['licences', 'issue', '--data', serverDir, '--plan', 'basic-1', '--count', '1'])).trim();
  server = await ServerProcess.start({ dataDir: serverDir, port: 0, tls: { cert: tls.cert, key: tls.key }, args: SERVER_FLAGS });
  tlsCa = (await import('node:fs')).readFileSync(tls.ca, 'utf8');
  api = new Api(server.url, tlsCa);
  await api.login(USER, PASSWORD);
  const licence = await api.json<{ uuid: string }>('POST', '/api/licences/redeem', { code });
  await api.json('POST', `/api/licences/${licence.uuid}/activate`, {});
  const packet = await api.json<{ uuid: string }>('POST', '/api/packets/build', {
    name: 'firmware 2.0.0',
    targetModels: [MODEL],
    components: [{ kind: 'firmware', fileName: 'firmware-2.0.0.img', data: firmwareImage('2.0.0', 16 * 1024).toString('base64'), version: '2.0.0' }],
  });
  packetUuid = packet.uuid;
}, 60_000);

afterAll(async () => {
  for (const a of agents) await a.stop();
  await server?.stop();
  server?.kill();
  await api?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
});

/** Router `updating` holds the one seat, `waiting` is rejected and retries every second. */
async function twoRouters(prefix: string): Promise<{ updating: Router; waiting: Router; agentU: AgentProcess; agentW: AgentProcess; logs: () => string }> {
  const updating = await router(`${prefix}-UPDATING`);
  const waiting = await router(`${prefix}-WAITING`);
  const agentU = start(updating, ['--fault', `reboot.durationMs=${REBOOT_MS}`]);
  const logs = () => `updating agent:\n${agentU.raw().slice(-5000)}\nwaiting agent:\n${agentW.raw().slice(-2000)}\nserver:\n${server!.log().slice(-3000)}`;
  let agentW: AgentProcess = agentU;
  await until('the updating router managed', async () => ((await device(updating.uuid)).admission === 'managed' ? true : undefined), logs);
  agentW = start(waiting);
  await until('the waiting router rejected', async () => ((await device(waiting.uuid)).admission === 'rejected' ? true : undefined), logs);
  return { updating, waiting, agentU, agentW, logs };
}

async function job(target: Router, rollout: Record<string, number>): Promise<string> {
  const created = await api.json<{ uuid: string }>('POST', '/api/jobs', {
    name: 'firmware 2.0.0',
    packetUuid,
    target: { deviceUuids: [target.uuid] },
    options: { timeoutSec: 300, rollout },
  });
  return created.uuid;
}

describe('a firmware update whose reboot outlasts the lease grace (real server, one seat, a router waiting for it)', () => {
  it('the updating router keeps its seat through the reboot (rollout.rebootTimeoutSec) and the update succeeds', async () => {
    const { updating, waiting, agentU, agentW, logs } = await twoRouters('KEEP');
    const jobUuid = await job(updating, { rebootTimeoutSec: 120 });
    const done = await until(
      'the job to finish',
      async () => {
        const j = await api.json<{ state: string; progress: { results: Record<string, number> } }>('GET', `/api/jobs/${jobUuid}`);
        return j.state !== 'running' ? j : undefined;
      },
      logs,
      90_000,
    );
    expect(done.progress.results).toMatchObject({ succeeded: 1, failed: 0 });
    const local = await localStatus(updating.dir);
    expect(local.firmware).toMatchObject({ booted: 'b', committed: 'b', bootCount: 2 });
    // The seat stayed with the updating router through a reboot six times the grace period.
    expect(await device(updating.uuid)).toMatchObject({ admission: 'managed', firmware: '2.0.0' });
    expect((await device(waiting.uuid)).admission).toBe('rejected');
    await agentU.stop();
    await agentW.stop();
  }, 180_000);

  it('a router rejected for want of a licence after its reboot passes the health check and keeps the new firmware', async () => {
    const { updating, waiting, agentU, agentW, logs } = await twoRouters('LOSE');
    // The reboot timeout (1 s) is shorter than the reboot: the waiting router takes the seat.
    const jobUuid = await job(updating, { rebootTimeoutSec: 1 });
    await until('the waiting router to get the seat', async () => ((await device(waiting.uuid)).admission === 'managed' ? true : undefined), logs, 90_000);
    const local = await until(
      'the update to be committed on the router',
      async () => {
        const s = await localStatus(updating.dir);
        return s.recentJobs[0]?.state ? s : undefined;
      },
      logs,
      90_000,
    );
    expect(local.recentJobs[0]!.state).toBe('succeeded');
    expect(local.firmware).toMatchObject({ booted: 'b', committed: 'b' });
    expect(agentU.raw()).toContain('health check passed: authenticated by the server, not managed for licensing reasons');
    // The waiting router leaves: the updating router gets the seat back and reports its result.
    await agentW.stop();
    const done = await until(
      'the job to finish',
      async () => {
        const j = await api.json<{ state: string; progress: { results: Record<string, number> } }>('GET', `/api/jobs/${jobUuid}`);
        return j.state !== 'running' ? j : undefined;
      },
      logs,
      90_000,
    );
    expect(done.progress.results).toMatchObject({ succeeded: 1, failed: 0 });
    await agentU.stop();
  }, 240_000);
});
