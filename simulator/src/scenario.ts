import { readFileSync } from 'node:fs';
import type { ConfigInput } from '@router-fleet/agent';
import { type FleetHandle, startFleet } from './fleet.js';
import { createJob, jobDeviceResults, type JobSpec, type JobView, waitJob } from './jobs.js';
import { buildReport, type FleetReport, LivePrinter, servePrometheus } from './metrics.js';
import { SimError } from './errors.js';
import { readJsonFile } from './json-file.js';
import { RestClient } from './rest.js';
import { serverUrls } from './server-url.js';
import { type Shard, validateShard } from './shard.js';
import type { FleetStats } from './stats.js';

/** One step of a scripted timeline. */
export type ScenarioStep =
  | { step: 'ramp'; devices?: number; rate?: number; window?: number }
  | { step: 'wait-until-admitted'; count: number; timeoutSec?: number; includeRejected?: boolean }
  | ({ step: 'create-job'; id?: string } & JobSpec)
  | { step: 'wait-job'; id?: string; percent?: number; timeoutSec?: number }
  | { step: 'cut-connections'; fraction: number; seed?: number }
  | { step: 'restart-devices'; fraction: number; seed?: number; powerCut?: boolean }
  | { step: 'wait'; sec: number }
  | { step: 'stop' };

/** A repeatable load test: the fleet, the server and the timeline. */
export interface Scenario {
  /** REST base URL of the server. */
  server: string;
  /** Bearer token (or FLEET_SIM_TOKEN, or `login`). */
  token?: string;
  login?: { username: string; password: string };
  /** PEM file of the CA that verifies the server (HTTPS). */
  ca?: string;
  /** Directory written by `fleet-sim provision`. */
  profiles: string;
  devices?: number;
  /** Run only this slice of the fleet (`{ "index": K, "count": N }`, 1 ≤ K ≤ N; see `startFleet`). */
  shard?: Shard;
  processes?: number;
  behaviour?: string;
  seed?: number;
  channelOrigin?: string;
  /** The control channel the profiles must name (`ws` or `mqtt`); default whatever they name. */
  transport?: 'ws' | 'mqtt';
  agent?: ConfigInput;
  /** Where the JSON report goes. */
  report?: string;
  prometheus?: number;
  steps: ScenarioStep[];
}

const STEPS = ['ramp', 'wait-until-admitted', 'create-job', 'wait-job', 'cut-connections', 'restart-devices', 'wait', 'stop'];

/** Validates a scenario (throws SIM_SCENARIO_INVALID naming the problem). */
export function validateScenario(value: unknown): Scenario {
  const s = value as Partial<Scenario> | null;
  if (!s || typeof s !== 'object') throw invalid('a scenario is a JSON object');
  if (typeof s.server !== 'string') throw invalid('scenario.server (REST base URL) is required');
  serverUrls(s.server); // SIM_SERVER_URL_INVALID before anything runs
  if (typeof s.profiles !== 'string') throw invalid('scenario.profiles (provisioned directory) is required');
  if (s.shard !== undefined) validateShard(s.shard, 'scenario.shard');
  if (s.transport !== undefined && s.transport !== 'ws' && s.transport !== 'mqtt') throw invalid('scenario.transport must be "ws" or "mqtt"');
  if (!Array.isArray(s.steps) || s.steps.length === 0) throw invalid('scenario.steps must be a non-empty array');
  for (const [i, step] of s.steps.entries()) {
    if (!step || !STEPS.includes((step as { step: string }).step)) throw invalid(`step ${i}: unknown step ${JSON.stringify((step as { step?: unknown })?.step)}`);
    if (step.step === 'wait' && !(step.sec >= 0)) throw invalid(`step ${i}: wait needs sec ≥ 0`);
    if ((step.step === 'cut-connections' || step.step === 'restart-devices') && !(step.fraction >= 0 && step.fraction <= 1)) {
      throw invalid(`step ${i}: fraction must be in 0..1`);
    }
    if (step.step === 'wait-until-admitted' && !(step.count >= 0)) throw invalid(`step ${i}: count must be ≥ 0`);
    if (step.step === 'ramp' && step.window !== undefined && !(Number.isInteger(step.window) && step.window >= 0)) {
      throw invalid(`step ${i}: window must be an integer ≥ 0`);
    }
  }
  if (s.steps[0]!.step !== 'ramp') throw invalid('the first step must be ramp');
  return s as Scenario;
}

function invalid(message: string): SimError {
  return new SimError('SIM_SCENARIO_INVALID', message);
}

export function loadScenario(file: string): Scenario {
  return validateScenario(readJsonFile(file, 'scenario', 'SIM_SCENARIO_INVALID'));
}

export interface StepRecord {
  step: string;
  startedAt: string;
  durationSec: number;
  detail?: unknown;
}

/** Runs a scenario to its end; returns the report (also written to `scenario.report`). */
export interface ScenarioIo {
  log?: (line: string) => void;
  live?: LivePrinter;
  /** Aborting stops the run at the next step (or wait) and still produces the report. */
  signal?: AbortSignal;
}

export async function runScenario(scenario: Scenario, io: ScenarioIo = {}): Promise<FleetReport> {
  const log = io.log ?? (() => {});
  const caPem = scenario.ca ? readFileSync(scenario.ca, 'utf8') : undefined;
  const token = scenario.token ?? process.env['FLEET_SIM_TOKEN'];
  const rest = new RestClient({ server: serverUrls(scenario.server).rest, ...(token ? { token } : {}), ...(caPem ? { caPem } : {}) });
  if (!token && scenario.login) await rest.login(scenario.login.username, scenario.login.password);
  const startedAt = Date.now();
  const steps: StepRecord[] = [];
  const jobs = new Map<string, JobView>();
  const jobList: Array<{ id: string; uuid: string; final?: JobView; results?: Record<string, number> }> = [];
  let fleet: FleetHandle | undefined;
  let prometheus: Awaited<ReturnType<typeof servePrometheus>> | undefined;
  let ticker: NodeJS.Timeout | undefined;
  let final: FleetStats | undefined;
  try {
    for (const step of scenario.steps) {
      if (io.signal?.aborted && fleet) {
        log('interrupted: stopping');
        final = await fleet.stop();
        break;
      }
      const t = Date.now();
      let detail: unknown;
      log(`step ${step.step}`);
      switch (step.step) {
        case 'ramp':
          if (fleet) throw new Error('ramp: the fleet is already running');
          fleet = await startFleet({
            profiles: scenario.profiles,
            ...(step.devices ?? scenario.devices ? { devices: step.devices ?? scenario.devices } : {}),
            ...(step.rate ? { rate: step.rate } : {}),
            ...(step.window !== undefined ? { window: step.window } : {}),
            ...(scenario.shard ? { shard: scenario.shard } : {}),
            ...(scenario.processes !== undefined ? { processes: scenario.processes } : {}),
            ...(scenario.behaviour ? { behaviour: scenario.behaviour } : {}),
            ...(scenario.seed !== undefined ? { seed: scenario.seed } : {}),
            ...(scenario.channelOrigin ? { channelOrigin: scenario.channelOrigin } : {}),
            ...(scenario.transport ? { transport: scenario.transport } : {}),
            ...(scenario.agent ? { agent: scenario.agent } : {}),
          });
          if (scenario.prometheus !== undefined) prometheus = await servePrometheus(scenario.prometheus, () => fleet!.stats());
          if (io.live) ticker = setInterval(() => io.live!.update(fleet!.stats()), 1000);
          detail = { devices: fleet.devices, processes: fleet.processes };
          break;
        case 'wait-until-admitted': {
          const f = need(fleet);
          const s = await f.waitFor(
            (x) => x.managed + (step.includeRejected ? x.unmanaged + x.rejected : 0) >= step.count,
            (step.timeoutSec ?? 300) * 1000,
          );
          detail = { managed: s.managed, unmanaged: s.unmanaged, rejected: s.rejected };
          break;
        }
        case 'create-job': {
          const f = need(fleet);
          // Before the request: offers may reach routers before the response reaches us.
          f.jobCreated(Date.now());
          const job = await createJob(rest, step, async () =>
            (await f.details()).filter((d) => d.state === 'managed').map((d) => d.deviceId),
          );
          const id = step.id ?? `job${jobList.length + 1}`;
          jobs.set(id, job);
          jobList.push({ id, uuid: job.uuid });
          detail = { id, uuid: job.uuid, devices: job.progress.devices.total };
          break;
        }
        case 'wait-job': {
          const entry = step.id ? jobList.find((j) => j.id === step.id) : jobList.at(-1);
          if (!entry) throw new Error(`wait-job: no job ${step.id ?? ''}`);
          const view = await waitJob(rest, entry.uuid, step.percent ?? 100, (step.timeoutSec ?? 600) * 1000);
          if (io.live) io.live.jobs = { succeeded: view.progress.results['succeeded'] ?? 0, failed: view.progress.results['failed'] ?? 0 };
          entry.final = view;
          detail = { uuid: entry.uuid, percent: view.progress.percentComplete, results: view.progress.results };
          break;
        }
        case 'cut-connections':
          need(fleet).cutConnections(step.fraction, step.seed ?? 1);
          break;
        case 'restart-devices':
          need(fleet).restartDevices(step.fraction, { seed: step.seed ?? 1, powerCut: step.powerCut ?? false });
          break;
        case 'wait':
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, step.sec * 1000);
            io.signal?.addEventListener('abort', () => {
              clearTimeout(timer);
              resolve();
            }, { once: true });
          });
          break;
        case 'stop':
          final = await need(fleet).stop();
          break;
      }
      steps.push({ step: step.step, startedAt: new Date(t).toISOString(), durationSec: (Date.now() - t) / 1000, ...(detail ? { detail } : {}) });
      if (final) break;
    }
    for (const j of jobList) {
      const results: Record<string, number> = {};
      for (const r of await jobDeviceResults(rest, j.uuid)) {
        const key = r.result ?? r.status;
        results[key] = (results[key] ?? 0) + 1;
      }
      j.results = results;
    }
    final ??= await need(fleet).stop();
    const f = need(fleet);
    const report = buildReport(final, startedAt, { steps, jobs: jobList, shard: f.shard, fleet: f.fleet });
    if (scenario.report) {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(scenario.report, `${JSON.stringify(report, null, 2)}\n`);
    }
    return report;
  } finally {
    if (ticker) clearInterval(ticker);
    io.live?.done();
    await prometheus?.close();
    if (fleet && !final) await fleet.stop().catch(() => undefined);
    await rest.close();
  }
}

function need(fleet: FleetHandle | undefined): FleetHandle {
  if (!fleet) throw new Error('the fleet is not running (the first step must be ramp)');
  return fleet;
}

/** The device results of a job that count as unfinished work, not as failures. */
const UNFINISHED = new Set(['pending', 'active']);

/** One job of a report that did not succeed on every device that finished it. */
export interface FailedJob {
  id: string;
  uuid: string;
  /** Devices whose result is neither `succeeded` nor unfinished (`failed`, `cancelled`, …). */
  failedDevices: number;
  results: Record<string, number>;
  /** The job's own state when the scenario last saw it (`aborted`, `cancelled` count as failed). */
  state?: string;
}

/**
 * The jobs of a scenario report that failed: some device finished with a result other than
 * `succeeded`, or the job itself ended aborted or cancelled. Devices still pending or active at
 * the end (a `wait-job` with `percent` < 100) are not failures. `fleet-sim scenario` exits with
 * SIM_JOBS_FAILED's code when this is not empty.
 */
export function failedJobs(report: FleetReport): FailedJob[] {
  const out: FailedJob[] = [];
  for (const raw of report.jobs ?? []) {
    const j = raw as { id: string; uuid: string; final?: JobView; results?: Record<string, number> };
    const results = j.results ?? {};
    let failedDevices = 0;
    for (const [key, n] of Object.entries(results)) if (key !== 'succeeded' && !UNFINISHED.has(key)) failedDevices += n;
    const state = j.final?.state;
    if (failedDevices > 0 || state === 'aborted' || state === 'cancelled') {
      out.push({ id: j.id, uuid: j.uuid, failedDevices, results, ...(state ? { state } : {}) });
    }
  }
  return out;
}
