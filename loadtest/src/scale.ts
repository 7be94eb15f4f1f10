import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import {
  createJob,
  type FleetHandle,
  type FleetStats,
  type FleetReport,
  getJob,
  jobDeviceResults,
  type JobView,
  reached,
  type ShardedFleetHandle,
  startFleet,
  startShardedFleet,
} from '@router-fleet/simulator';
import { type BaselineResult, runBaseline } from './baseline.js';
import { type BrokerFleet, startBrokerFleet } from './brokers.js';
import { type MqttFloorResult, runMqttFloor } from './mqtt-floor.js';
import { mqttServerArgs, profileDevices, writeMqttProfiles } from './mqtt-stage.js';
import { barChartSvg, histogramSvg } from './report.js';
import { processTreeRss } from './stats.js';
import { LoadtestError } from './errors.js';
import { openRunStore, parseStoreOption, type RunStore } from './run-store.js';
import { type Stage, stage } from './stage.js';

/** Routers per server worker when `workers` is not given (one process's open files: 20,000). */
export const ROUTERS_PER_SERVER_WORKER = 15_000;

/**
 * Connects per second asked of the simulator by default: about what this 2-core machine sustains
 * end to end over TLS (≈ 250–280 admissions/s with server and simulator sharing the cores). A
 * faster ramp only queues TLS handshakes and hellos: latencies grow, and hellos queued in two
 * server workers for seconds can be decided out of the order they were sent.
 */
export const DEFAULT_SCALE_RATE = 250;

/** Resolution of the first-come-first-served check (ms): see runScale. */
export const FCFS_SLACK_MS = 250;

export interface ScaleOptions {
  devices: number;
  licences: number;
  /** Server worker processes (of each server process). Default: one per 15,000 routers (a process holds at most ~19,000 sockets). */
  workers?: number;
  /**
   * The servers' store: `sqlite` (default: the file in the run's data directory), `postgres` (a
   * database of the run's own on PGHOST/PGPORT, default 127.0.0.1:5432 user postgres, dropped when
   * the run ends, also on failure) or a `postgres://` URL of an empty database. The report names it.
   */
  store?: string;
  /**
   * Independent `fleet-server serve` processes (own port and data directory each, one shared
   * PostgreSQL store), the fleet spread over them (router i dials server i mod N). Default 1.
   */
  servers?: number;
  /** Simulator processes (of each shard with `shards`). Default: one per 15,000 routers. */
  processes?: number;
  /**
   * Run the simulator as N shards of the fleet file side by side (each its own coordinator and
   * processes, the slice `fleet-sim run --shard k/N` runs), driven as one fleet; the simulator's
   * figures in the report are then the merge of the N shard reports (`mergeReports`, as
   * `fleet-sim report merge`), which the report also holds (`simulator.shards`). Default 1.
   */
  shards?: number;
  /** Connects per second asked of the simulator. Default `DEFAULT_SCALE_RATE` (250). */
  rate?: number;
  /** Node options of the server's processes (e.g. `--cpu-prof --cpu-prof-dir=DIR` to profile a run). Default none. */
  serverNodeArgs?: string[];
  /** Node options of the simulator's processes (as `serverNodeArgs`). Default none. */
  simulatorNodeArgs?: string[];
  /** Report path (`.json`; a `.md` and SVG charts go next to it). */
  report: string;
  /** Also measure the raw-ws baseline (up to 18,000 connections) for the ratios. Default true. */
  baseline?: boolean;
  log?: (text: string) => void;
  /** HTTPS/WSS with a local CA (default) or plain HTTP/WS. The report says which. */
  tls?: boolean;
  /** Overall time limit (ms). Default 15 min. */
  timeoutMs?: number;
  /**
   * The job's rollout limit: most executions in flight at once (`options.maxConcurrent`). Default
   * none. A fleet far larger than the machine can reboot at once needs it, as an operator would set
   * it: routers that are away longer than the licence grace period lose their seat to the routers
   * waiting for one, and then fail their health check.
   */
  jobConcurrency?: number;
  /**
   * Control channel: `ws` (default; the server holds the sockets) or `mqtt` (Mosquitto brokers of
   * the run's own hold them, sharded by bucket and bridged to a hub when the fleet needs several;
   * the server consumes the hub; one more phase restarts every broker).
   */
  transport?: 'ws' | 'mqtt';
  /** With `mqtt`: most routers one broker holds (default `DEFAULT_DEVICES_PER_BROKER`). */
  devicesPerBroker?: number;
  /**
   * On SIGINT/SIGTERM stop the fleet and the server, remove the data directory and exit 130 (the
   * CLI sets this: an interrupted run must not leave a server holding 50,000 sockets behind).
   */
  exitOnSignal?: boolean;
}

export interface ScaleCheck {
  name: string;
  pass: boolean;
  detail: string;
}

/**
 * The end-to-end scale run: stage a server (own data directory, licences, fleet), start N virtual
 * routers, wait for admission, one update job to every managed router, a server restart, and the
 * checks: exactly min(N, L) managed, first come first served, every managed router updated, every
 * router back after the restart, no protocol errors. Writes a JSON and a Markdown report with SVG
 * charts. Over TLS unless `tls: false` (the report says which).
 */
export async function runScale(options: ScaleOptions) {
  const log = options.log ?? (() => {});
  const started = Date.now();
  const expectedManaged = Math.min(options.devices, options.licences);
  const deadline = started + (options.timeoutMs ?? 15 * 60_000);
  const left = () => Math.max(1000, deadline - Date.now());
  const checks: ScaleCheck[] = [];
  const phases: Record<string, number> = {};
  const phase = (name: string, since: number) => (phases[name] = Math.round((Date.now() - since) / 100) / 10);
  let st: Stage | undefined;
  let fleet: FleetHandle | undefined;
  let sharded: ShardedFleetHandle | undefined;
  let baseline: BaselineResult | undefined;
  /** Why the raw floor has no figures in this run, when it has none. */
  let baselineError: string | undefined;
  let brokers: BrokerFleet | undefined;
  let mqttFloor: MqttFloorResult | undefined;
  const mqtt = options.transport === 'mqtt';
  const serverCount = options.servers ?? 1;
  checkScaleOptions(options);
  mkdirSync(dirname(options.report), { recursive: true });
  let runStore: RunStore | undefined;
  const cleanUp = async () => {
    await fleet?.stop().catch(() => undefined);
    if (st) await Promise.all(st.servers.map((s) => s.stop().catch(() => undefined)));
    await brokers?.close().catch(() => undefined);
    if (st) for (const dir of st.dataDirs) rmSync(dir, { recursive: true, force: true });
    await runStore?.release().catch((err: unknown) => log(`could not drop the run's database: ${(err as Error).message}`));
  };
  const onSignal = (signal: NodeJS.Signals) => {
    log(`${signal}: stopping the fleet and the server`);
    void cleanUp().finally(() => process.exit(130));
  };
  if (options.exitOnSignal) {
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  }
  try {
    let t = Date.now();
    runStore = await openRunStore(options.store, log);
    st = await stage({
      ...(runStore.url ? { store: runStore.url } : {}),
      servers: serverCount,
      devices: options.devices,
      plan: 'basic-25',
      licences: Math.floor(options.licences / 25),
      more: [{ plan: 'basic-1', count: options.licences % 25 }],
      workers: options.workers ?? Math.max(1, Math.ceil(options.devices / ROUTERS_PER_SERVER_WORKER)),
      tls: options.tls ?? true,
      // The server's log beside the report: where to look when a run falls short.
      serverLog: options.report.replace(/\.json$/, '') + '-server.log',
      ...(options.serverNodeArgs?.length ? { serverNodeArgs: options.serverNodeArgs } : {}),
      log,
    });
    phase('stageSec', t);
    let profiles = st.profilesDir;
    if (mqtt) {
      t = Date.now();
      const devices = await profileDevices(st.profilesDir);
      brokers = await startBrokerFleet({
        devices,
        ...(st.tls ? { tls: { certPath: st.certPath, keyPath: st.keyPath } } : {}),
        ...(options.devicesPerBroker ? { devicesPerBroker: options.devicesPerBroker } : {}),
        log,
      });
      phase('brokersSec', t);
      if (options.baseline !== false) {
        // Before the server consumes the brokers: the floor's hellos are not the server's to answer.
        const n = Math.min(devices.length, 18_000);
        log(`raw ${st.tls ? 'mqtts' : 'mqtt'} floor: ${n} clients on ${brokers.shards.length} broker(s)`);
        mqttFloor = await runMqttFloor({ brokers, devices: devices.slice(0, n), ...(st.tls ? { caPem: st.caPem } : {}) });
      }
      await st.restart(mqttServerArgs(brokers));
      profiles = await writeMqttProfiles(st.profilesDir, brokers);
      log(`fleet-server consumes ${brokers.serverUrl}; routers dial ${brokers.shards.map((b) => b.deviceUrl).join(', ')}`);
    }
    const serversRss = () => st!.servers.reduce((sum, s) => sum + processTreeRss(s.child.pid!), 0);
    const serverIdleRss = serversRss();
    const brokerIdle = brokers ? { rss: brokers.rss(), heap: await brokers.heap() } : undefined;
    if (options.baseline !== false && !mqtt) {
      // The floor over the same transport (and, for TLS, the same certificate) as the run.
      const n = Math.min(options.devices, 18_000);
      log(`raw ${st.tls ? 'wss' : 'ws'} baseline: ${n} connections`);
      // A floor that cannot be measured (the machine too loaded to open its connections in time)
      // leaves the run without ratios, not without figures: the report says why.
      baseline = await runBaseline({
        connections: n,
        processes: Math.max(1, Math.ceil(n / 15_000)),
        sourceAddresses: 4,
        ...(st.tls ? { tls: { certPath: st.certPath, keyPath: st.keyPath, caPath: st.caPath } } : {}),
        // On a loaded machine 18,000 TLS connects can take longer than the default 5 min: up to a
        // quarter of the run's time limit (the floor is measured under the same load as the run).
        connectTimeoutMs: Math.max(300_000, Math.round((deadline - started) / 4)),
      }).catch((err: unknown) => {
        baselineError = err instanceof Error ? err.message : String(err);
        log(`raw baseline not measured: ${baselineError}`);
        return undefined;
      });
    }

    t = Date.now();
    const fleetOptions = {
      profiles,
      devices: options.devices,
      rate: options.rate ?? DEFAULT_SCALE_RATE,
      ...(options.processes ? { processes: options.processes } : {}),
      ...(options.simulatorNodeArgs?.length ? { execArgv: options.simulatorNodeArgs } : {}),
      behaviour: 'ideal',
      seed: 2026,
    };
    const fleetStartedAt = t;
    fleet = (options.shards ?? 1) > 1 ? (sharded = await startShardedFleet(fleetOptions, options.shards!)) : await startFleet(fleetOptions);
    const unadmitted = options.devices - expectedManaged;
    // On a time-out the run goes on with what was admitted: the report says where it fell short.
    const admitted = await fleet
      .waitFor((s) => s.managed === expectedManaged && s.rejected + s.backingOff >= unadmitted, left())
      .catch(() => fleet!.stats());
    phase('admissionSec', t);
    // The first admission of the whole fleet on its own (the final histograms also hold the
    // reconnects after the firmware reboots and the server restart).
    const firstAdmission = {
      connect: admitted.histograms.connect.summary(),
      admission: admitted.histograms.admission.summary(),
    };
    // Server memory with every router connected (all server processes), before the job.
    const serverRss = serversRss();
    const brokerLoaded = brokers ? { rss: brokers.rss(), heap: await brokers.heap() } : undefined;
    log(`${admitted.managed} managed, ${options.devices - admitted.managed} without a licence`);
    checks.push({ name: 'exactly min(N, L) managed', pass: admitted.managed === expectedManaged, detail: `${admitted.managed} of ${expectedManaged}` });

    // First come, first served: no router whose decided hello was sent clearly after that of the
    // first router left without a licence may hold one. "Decided hello": the one the server
    // answered (an earlier connection that closed before its hello was answered, e.g. a connect
    // or hello timeout under load, never reached the queue). "Clearly": hellos sent within
    // FCFS_SLACK_MS of each other by different sockets and processes can reach the server in
    // either order under load, so the check works at that resolution (the server itself decides
    // in arrival order, in one transaction).
    const details = await fleet.details();
    const managedIds = details.filter((d) => d.admission === 'managed').map((d) => d.deviceId);
    const refused = details.filter((d) => d.admission !== 'managed');
    const firstRefusedHello = Math.min(...refused.map((d) => d.decidedHelloAt));
    const late = refused.length ? details.filter((d) => d.admission === 'managed' && d.decidedHelloAt > firstRefusedHello + FCFS_SLACK_MS) : [];
    const inversions = late.length;
    const largestMs = Math.round(Math.max(0, ...late.map((d) => d.decidedHelloAt - firstRefusedHello)));
    const retriedHello = details.filter((d) => d.decidedHelloAt > d.firstHelloAt).length;
    checks.push({
      name: 'first come, first served',
      pass: inversions === 0,
      detail: `${inversions} managed routers said hello more than ${FCFS_SLACK_MS} ms after the first refused one`
        + (inversions ? ` (the latest ${largestMs} ms after)` : '')
        + ` (${retriedHello} routers needed more than one connection before their hello was answered)`,
    });

    t = Date.now();
    fleet.jobCreated();
    // The time limit holds inside the job phase too: every REST call aborts when it passes (a
    // saturated server can take minutes to answer one poll).
    const jobPhase = AbortSignal.timeout(Math.max(1000, deadline - Date.now()));
    st.rest.signal = jobPhase;
    let j: JobView | undefined;
    let jobUuid: string | undefined;
    /** A REST failure that ended the job phase early (the run goes on and reports it). */
    let jobError: string | undefined;
    try {
      const jobOptions = options.jobConcurrency ? { options: { rollout: { maxConcurrent: options.jobConcurrency } } } : {};
      jobUuid = (await createJob(st.rest, { packet: { firmwareVersion: '99.0.0', sizeBytes: 16 * 1024 }, ...jobOptions }, async () => managedIds)).uuid;
      j = await getJob(st.rest, jobUuid);
      while (!reached(j, 100) && !['finished', 'cancelled', 'aborted'].includes(j.state)) {
        // Not more often: one job view of a 40,000-device job costs the server tens of milliseconds.
        await new Promise((r) => setTimeout(r, 5000));
        j = await getJob(st.rest, jobUuid);
        log(`job ${j.progress.percentComplete.toFixed(0)} %`);
      }
    } catch (error) {
      if (jobPhase.aborted) log(`time limit reached in the job phase${j ? ` at ${j.progress.percentComplete.toFixed(1)} %` : ''}`);
      else {
        jobError = error instanceof Error ? error.message : String(error);
        log(`the job phase ended early: ${jobError}`);
      }
    } finally {
      st.rest.signal = undefined;
    }
    phase('jobSec', t);
    // Out of time also when the job phase ended early on an error after the deadline passed.
    const outOfTime = jobPhase.aborted || Date.now() >= deadline;
    const succeeded = j ? ((j.progress.results as Record<string, number>)['succeeded'] ?? 0) : 0;
    let others = '';
    if (succeeded !== expectedManaged && jobUuid) {
      // Name what happened to the rest: result and error code, counted, with a few serial numbers.
      st.rest.signal = AbortSignal.timeout(60_000);
      const rest = (await jobDeviceResults(st.rest, jobUuid).catch(() => [])).filter((r) => r.result !== 'succeeded');
      st.rest.signal = undefined;
      const byOutcome = new Map<string, string[]>();
      for (const r of rest) {
        const key = `${r.result ?? r.status}${r.errorCode ? ` ${r.errorCode}` : ''}`;
        byOutcome.set(key, [...(byOutcome.get(key) ?? []), r.serialNumber]);
      }
      if (byOutcome.size) others = `; the others: ${[...byOutcome].map(([k, serials]) => `${serials.length} × ${k} (${serials.slice(0, 5).join(', ')})`).join('; ')}`;
    }
    const limit = outOfTime ? ` when the time limit (${Math.round((deadline - started) / 60_000)} min) was reached` : '';
    checks.push({
      name: 'every managed router updated',
      pass: succeeded === expectedManaged,
      detail: `${succeeded} of ${expectedManaged} succeeded${limit}${jobUuid ? '' : ' (the job was not created)'}${others}${jobError ? `; the job phase ended early: ${jobError}` : ''}`,
    });

    let back = fleet.stats();
    if (outOfTime) {
      checks.push({ name: 'every router back after a server restart', pass: false, detail: 'not run: the time limit was reached' });
    } else {
      t = Date.now();
      // Back = managed by an admission decided after the restart began. Not "reconnected": a router
      // away longer than the lease grace can lose its seat to one that was waiting for a licence
      // (FCFS); that one is then managed, but it is not a *re*connect.
      const managedBefore = await managedSerials(fleet);
      fleet.mark(t);
      await st.restart();
      // Figures counted after the mark only (markAt): stats from before it would count the
      // admissions of the last phase.
      back = await fleet
        .waitFor((s) => s.markAt === t && s.managedSinceMark === expectedManaged && s.managed === expectedManaged, left())
        .catch(() => fleet!.stats());
      phase('restartSec', t);
      checks.push({
        name: 'every router back after a server restart',
        pass: back.managedSinceMark === expectedManaged && back.managed === expectedManaged,
        detail: `${back.managedSinceMark} of ${expectedManaged} managed again (admitted after the restart)`,
      });
      // A restart must not move seats: the routers managed after it are the ones managed before it.
      const managedAfter = await managedSerials(fleet);
      const moved = [...managedBefore].filter((serial) => !managedAfter.has(serial));
      checks.push({
        name: 'no seat moved across the restart',
        pass: moved.length === 0 && managedAfter.size === managedBefore.size,
        detail: `${managedBefore.size} managed before, ${managedAfter.size} after; ${moved.length} lost their seat${moved.length ? ` (${moved.slice(0, 5).join(', ')})` : ''}`,
      });
    }
    if (brokers && !outOfTime) {
      // Every broker stops (sessions and retained presence persisted) and starts again, one after
      // the other, the hub last: routers and the server's bucket clients reconnect by themselves.
      t = Date.now();
      const managedBefore = await managedSerials(fleet);
      fleet.mark(t);
      await brokers.restart();
      back = await fleet
        .waitFor((s) => s.markAt === t && s.managedSinceMark === expectedManaged && s.managed === expectedManaged, left())
        .catch(() => fleet!.stats());
      phase('brokerRestartSec', t);
      checks.push({
        name: 'every router back after a broker restart',
        pass: back.managedSinceMark === expectedManaged && back.managed === expectedManaged,
        detail: `${back.managedSinceMark} of ${expectedManaged} managed again (admitted after the brokers restarted)`,
      });
      const managedAfter = await managedSerials(fleet);
      const moved = [...managedBefore].filter((serial) => !managedAfter.has(serial));
      checks.push({
        name: 'no seat moved across the broker restart',
        pass: moved.length === 0 && managedAfter.size === managedBefore.size,
        detail: `${managedBefore.size} managed before, ${managedAfter.size} after; ${moved.length} lost their seat${moved.length ? ` (${moved.slice(0, 5).join(', ')})` : ''}`,
      });
    }
    const protocolErrors = Object.entries(back.errors).filter(([code]) => code.startsWith('PROTO_'));
    checks.push({ name: 'no protocol errors', pass: protocolErrors.length === 0, detail: protocolErrors.length ? JSON.stringify(Object.fromEntries(protocolErrors)) : 'none' });

    const final = await fleet.stop();
    fleet = undefined;
    // Sharded: the figures of the shards' reports merged by the code of `fleet-sim report merge`.
    const shardReports = sharded?.reports(fleetStartedAt);
    const h = shardReports?.merged.histograms ?? Object.fromEntries(Object.entries(final.histograms).map(([k, v]) => [k, v.summary()]));
    const simRss = final.memory.rss;
    const ratios: Record<string, number> | null = mqttFloor && brokerIdle && brokerLoaded
      ? {
          connectsPerSec: +(options.devices / (phases['admissionSec'] ?? 1) / Math.max(1, mqttFloor.connectsPerSec)).toFixed(2),
          brokerHeapBytesPerDeviceToFloor: +(
            (brokerLoaded.heap - brokerIdle.heap) / options.devices / Math.max(1, mqttFloor.brokerHeapBytesPerClient)
          ).toFixed(2),
          simulatorBytesPerRouterToFloorClient: +(simRss / options.devices / Math.max(1, mqttFloor.clientBytesPerClient)).toFixed(2),
        }
      : baseline
        ? {
            connectsPerSec: +(options.devices / (phases['admissionSec'] ?? 1) / baseline.connectsPerSec).toFixed(2),
            serverBytesPerDeviceToRawServer: +((serverRss - serverIdleRss) / options.devices / Math.max(1, baseline.serverBytesPerConnection)).toFixed(2),
            simulatorBytesPerRouterToRawClient: +(simRss / options.devices / Math.max(1, baseline.clientBytesPerConnection)).toFixed(2),
          }
        : null;
    const result = {
      devices: options.devices,
      licences: options.licences,
      workers: st.workers,
      servers: st.servers.length,
      store: runStore.description,
      jobConcurrency: options.jobConcurrency ?? null,
      processes: final.processes,
      transport: mqtt
        ? `${st.tls ? 'mqtts (TLS to the brokers, certificate from a local CA)' : 'mqtt (plain, no TLS: loopback measurement only)'}, MQTT 5 through ${brokers!.shards.length} Mosquitto broker(s)${brokers!.hub ? ' bridged to a hub' : ''}`
        : st.tls ? 'wss (TLS, server certificate from a local CA)' : 'ws (plain, no TLS: loopback measurement only)',
      pass: checks.every((c) => c.pass),
      checks,
      counts: scaleCounts(final, shardReports?.merged, succeeded),
      phases,
      connectsPerSec: Math.round(options.devices / (phases['admissionSec'] ?? 1)),
      firstAdmission,
      histograms: h,
      reconnectBins: final.reconnectBins,
      errors: final.errors,
      server: {
        idleRssBytes: serverIdleRss,
        connectedRssBytes: serverRss,
        bytesPerDevice: Math.round((serverRss - serverIdleRss) / options.devices),
      },
      simulator: {
        rssBytes: simRss,
        bytesPerRouter: Math.round(simRss / options.devices),
        cpuSec: (final.cpu.userMs + final.cpu.systemMs) / 1000,
        shards: shardReports ? shardSummary(shardReports) : null,
      },
      brokers: brokers && brokerIdle && brokerLoaded
        ? {
            count: brokers.shards.length,
            hub: brokers.hub !== undefined,
            devicesPerBroker: brokers.shards.map((b) => b.devices),
            timings: brokers.timings,
            idleRssBytes: brokerIdle.rss,
            connectedRssBytes: brokerLoaded.rss,
            idleHeapBytes: brokerIdle.heap,
            connectedHeapBytes: brokerLoaded.heap,
            rssBytesPerDevice: Math.round((brokerLoaded.rss - brokerIdle.rss) / options.devices),
            // All in: the dynamic-security accounts too (they are there before any router connects).
            allInRssBytesPerDevice: Math.round(brokerLoaded.rss / options.devices),
            heapBytesPerDevice: Math.round((brokerLoaded.heap - brokerIdle.heap) / options.devices),
          }
        : null,
      mqttFloor: mqttFloor ?? null,
      baseline: baseline ?? null,
      ...(baselineError ? { baselineError } : {}),
      ratios,
      durationSec: Math.round((Date.now() - started) / 1000),
    };
    writeReports(options.report, result);
    return result;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanUp();
  }
}

type ScaleResult = {
  devices: number;
  licences: number;
  workers: number;
  servers: number;
  store: string;
  counts: ScaleCounts;
  /** The job's maxConcurrent rollout limit, null when none. */
  jobConcurrency: number | null;
  transport: string;
  pass: boolean;
  checks: ScaleCheck[];
  phases: Record<string, number>;
  histograms: Record<string, { p50: number; p90: number; p99: number; max: number; count: number }>;
  firstAdmission: Record<string, { p50: number; p90: number; p99: number; max: number; count: number }>;
  reconnectBins: Record<string, number>;
  durationSec: number;
  connectsPerSec: number;
  server: { bytesPerDevice: number };
  simulator: { bytesPerRouter: number; shards: { count: number; devices: number[] } | null };
  baseline: BaselineResult | null;
  mqttFloor: MqttFloorResult | null;
  brokers: { count: number; heapBytesPerDevice: number; rssBytesPerDevice: number; allInRssBytesPerDevice: number } | null;
  ratios: Record<string, number> | null;
  [k: string]: unknown;
};

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;

function writeReports(jsonPath: string, r: ScaleResult): void {
  const dir = dirname(jsonPath);
  mkdirSync(dir, { recursive: true });
  writeFileSync(jsonPath, `${JSON.stringify(r, null, 2)}\n`);
  const base = basename(jsonPath).replace(/\.json$/, '');
  const charts: string[] = [];
  for (const [name, h] of Object.entries(r.histograms)) {
    if (!h.count) continue;
    const file = `${base}-${name}.svg`;
    writeFileSync(join(dir, file), histogramSvg(`${name} (${h.count.toLocaleString('en')} samples)`, h as never));
    charts.push(`![${name}](${file})`);
  }
  const bins = Object.entries(r.reconnectBins).sort((a, b) => Number(a[0]) - Number(b[0]));
  if (bins.length) {
    const file = `${base}-reconnects.svg`;
    writeFileSync(join(dir, file), barChartSvg('Reconnect times (firmware reboots and the server restart), per second', bins.map(([s, n]) => ({ label: `${s} s`, value: n })), 'routers'));
    charts.push(`![reconnects](${file})`);
  }
  const md = `# Scale run: ${r.devices.toLocaleString('en')} routers, ${r.licences.toLocaleString('en')} licences — ${r.pass ? 'PASS' : 'FAIL'}

Transport: ${r.transport}. Store: ${r.store}. Server processes: ${r.servers} × ${r.workers} worker(s).${r.simulator.shards ? ` Simulator: ${r.simulator.shards.count} shards of the fleet (${r.simulator.shards.devices.join(' + ')} routers), figures merged from their reports.` : ''} Job rollout limit: ${r.jobConcurrency === null ? 'none' : `${r.jobConcurrency} executions in flight`}. Duration: ${r.durationSec} s.

| check | result | detail |
| --- | --- | --- |
${r.checks.map((c) => `| ${c.name} | ${c.pass ? 'pass' : '**FAIL**'} | ${c.detail} |`).join('\n')}

| phase | seconds |
| --- | --- |
${Object.entries(r.phases).map(([k, v]) => `| ${k.replace(/Sec$/, '')} | ${v} |`).join('\n')}

| first admission of the fleet | count | p50 ms | p90 ms | p99 ms | max ms |
| --- | --- | --- | --- | --- | --- |
${Object.entries(r.firstAdmission).map(([k, h]) => `| ${k} | ${h.count} | ${h.p50} | ${h.p90} | ${h.p99} | ${h.max} |`).join('\n')}

| whole run (with reboots and restart) | count | p50 ms | p90 ms | p99 ms | max ms |
| --- | --- | --- | --- | --- | --- |
${Object.entries(r.histograms).map(([k, h]) => `| ${k} | ${h.count} | ${h.p50} | ${h.p90} | ${h.p99} | ${h.max} |`).join('\n')}

${r.mqttFloor && r.brokers ? mqttFigures(r, r.mqttFloor, r.brokers) : `| figure | this run | raw \`ws\` baseline (same run) | ratio |
| --- | --- | --- | --- |
| connects + admissions / s | ${r.connectsPerSec} | ${r.baseline ? `${r.baseline.connectsPerSec} connects/s (${r.baseline.connections} ${r.baseline.transport} conns)` : '—'} | ${r.ratios?.['connectsPerSec'] ?? '—'} |
| server memory per device | ${kb(r.server.bytesPerDevice)} | ${r.baseline ? kb(r.baseline.serverBytesPerConnection) : '—'} | ${r.ratios?.['serverBytesPerDeviceToRawServer'] ?? '—'} |
| simulator memory per router | ${kb(r.simulator.bytesPerRouter)} | ${r.baseline ? kb(r.baseline.clientBytesPerConnection) : '—'} | ${r.ratios?.['simulatorBytesPerRouterToRawClient'] ?? '—'} |`}

${typeof r['baselineError'] === 'string' ? `The raw floor was not measured in this run: ${r['baselineError']}.\n\n` : ''}Full figures (memory, CPU, baseline and ratios): \`${basename(jsonPath)}\`.

${charts.join('\n\n')}
`;
  writeFileSync(join(dir, `${base}.md`), md);
}

/** The figures of an MQTT run next to the raw MQTT floor of the same run. */
function mqttFigures(r: ScaleResult, f: MqttFloorResult, b: NonNullable<ScaleResult['brokers']>): string {
  return `| figure | this run | raw \`${f.transport}\` floor (same run, same brokers) | ratio |
| --- | --- | --- | --- |
| connects + admissions / s | ${r.connectsPerSec} | ${f.connectsPerSec} connects + hello round trips/s (${f.clients} clients) | ${r.ratios?.['connectsPerSec'] ?? '—'} |
| broker heap per device | ${kb(b.heapBytesPerDevice)} | ${kb(f.brokerHeapBytesPerClient)} | ${r.ratios?.['brokerHeapBytesPerDeviceToFloor'] ?? '—'} |
| broker RSS growth per device (the run's: pages the floor freed are reused) | ${kb(b.rssBytesPerDevice)} | ${kb(f.brokerBytesPerClient)} | — |
| broker RSS per device, all in (accounts, sessions, ${b.count} broker(s)) | ${kb(b.allInRssBytesPerDevice)} | — | — |
| server memory per device | ${kb(r.server.bytesPerDevice)} | — (the floor's consumer: ${(f.consumerRssBytes / 1048576).toFixed(0)} MiB in all) | — |
| simulator memory per router | ${kb(r.simulator.bytesPerRouter)} | ${kb(f.clientBytesPerClient)} per plain mqtt client | ${r.ratios?.['simulatorBytesPerRouterToFloorClient'] ?? '—'} |`;
}

/** The shards of a sharded run: routers and memory of each, and their merged report. */
function shardSummary(r: { shards: FleetReport[]; merged: FleetReport }) {
  return {
    count: r.merged.shard.count,
    devices: r.shards.map((s) => s.devices),
    rssBytes: r.shards.map((s) => s.memory.rssBytes),
    merged: r.merged,
  };
}

/** Serial numbers of the routers that are managed now. */
async function managedSerials(fleet: FleetHandle): Promise<Set<string>> {
  return new Set((await fleet.details()).filter((d) => d.state === 'managed').map((d) => d.serialNumber));
}

/**
 * Refuses option combinations a run cannot honour, before anything starts (LOADTEST_USAGE):
 * several server processes need a shared PostgreSQL store and the WebSocket transport.
 */
export function checkScaleOptions(options: Pick<ScaleOptions, 'servers' | 'store' | 'transport'>): void {
  const servers = options.servers ?? 1;
  if (!Number.isInteger(servers) || servers < 1 || servers > 16) {
    throw new LoadtestError('LOADTEST_USAGE', `--servers must be an integer from 1 to 16, not ${servers}`);
  }
  const store = parseStoreOption(options.store);
  if (servers > 1 && store === 'sqlite') {
    throw new LoadtestError('LOADTEST_USAGE', '--servers above 1 needs --store postgres (independent server processes share one PostgreSQL store; the SQLite file belongs to one data directory: use --workers for several processes on it)');
  }
  if (servers > 1 && options.transport === 'mqtt') {
    throw new LoadtestError('LOADTEST_USAGE', '--servers above 1 applies to --transport ws only (over MQTT the brokers hold the routers, not the server processes)');
  }
}

/**
 * What the fleet ended with, as counts two runs of the same fleet can be compared by (a sharded
 * run's from the merge of its shards' reports): routers managed and refused at the end, update
 * jobs the routers finished, and the job's succeeded executions on the server.
 */
export interface ScaleCounts {
  devices: number;
  managed: number;
  /** Routers without a licence at the end (refused by the server, or waiting to ask again). */
  refused: number;
  /** Update jobs the routers finished (counted by the simulator). */
  jobsFinished: number;
  jobsRolledBack: number;
  /** The job's executions that succeeded (counted by the server). */
  jobSucceeded: number;
  /** Routers per session state at the end. */
  states: Record<string, number>;
}

function scaleCounts(final: FleetStats, merged: FleetReport | undefined, jobSucceeded: number): ScaleCounts {
  const { devices, managed, rejected, backingOff, counters, states } = final;
  const from = merged ?? { devices, managed, rejected, backingOff, counters, states };
  return {
    devices: from.devices,
    managed: from.managed,
    refused: from.rejected + from.backingOff,
    jobsFinished: from.counters.jobsDone,
    jobsRolledBack: from.counters.jobsRolledBack,
    jobSucceeded,
    states: from.states,
  };
}
