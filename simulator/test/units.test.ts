import { describe, expect, it } from 'vitest';
import { parseDuration } from '../src/cli.js';
import { csvObjects } from '../src/csv.js';
import { defaultSourceAddresses } from '../src/fleet.js';
import { fleetToCsv, generateFleet } from '../src/fleet-generator.js';
import { Gate } from '../src/gate.js';
import { Histogram } from '../src/histogram.js';
import { firmwareImage } from '../src/jobs.js';
import { prometheusText, statusLine } from '../src/metrics.js';
import { parsePrometheusText, sampleValue } from '../../server-stub/test/helpers/prometheus-text.js';
import { failedJobs, validateScenario } from '../src/scenario.js';
import { serverUrls } from '../src/server-url.js';
import { mergeStats, type WorkerStats } from '../src/stats.js';
import { routerMetrics, setTelemetryPeriod } from '../src/telemetry.js';

function part(process: number, managed: number, samples: number[]): WorkerStats {
  const h = new Histogram();
  for (const s of samples) h.record(s);
  const empty = new Histogram().toJSON();
  return {
    process,
    pid: 100 + process,
    at: 1000,
    devices: managed + 1,
    started: managed + 1,
    due: managed + 1,
    states: { managed, 'backing-off': 1 },
    admission: { managed, unmanaged: 0, rejected: 0, authFailed: 0 },
    managedSinceMark: managed - 1,
    markAt: 500 + process,
    counters: {
      connects: managed, disconnects: 1, reconnects: 0, dialFailures: 2, dialsQueued: 0,
      restarts: 0, jobsOffered: 0, jobsActive: 0, jobsDone: 0, jobsRolledBack: 0,
    },
    errors: { 'dial:ECONNREFUSED': 2 },
    reconnectBins: { 0: 1 },
    histograms: { connect: h.toJSON(), admission: empty, reconnect: empty, jobOffer: empty, jobComplete: empty },
    openSockets: managed,
    memory: { rss: 1e8, heapUsed: 5e7, external: 0 },
    cpu: { userMs: 100, systemMs: 50 },
  };
}

describe('simulator units', () => {
  it('parses the fleet CSV it generates (quotes, commas) back into the same cells', () => {
    const fleet = generateFleet({ devices: 50, seed: 3 });
    const rows = csvObjects(fleetToCsv(fleet));
    expect(rows).toHaveLength(50);
    expect(rows.map((r) => r['serialNumber'])).toEqual(fleet.map((d) => d.serialNumber));
    expect(rows.map((r) => r['customFields.installer'])).toEqual(fleet.map((d) => d.customFields['installer']));
    expect(() => csvObjects('a,"b\n1,2\n')).toThrow(/cannot read the fleet CSV: Line 1: unterminated quoted field/);
  });

  it('merges the stats of several processes, histograms included, and exports them as Prometheus text', async () => {
    const s = mergeStats([part(0, 10, [5, 10]), part(1, 20, [20, 40])]);
    expect(s.managed).toBe(30);
    expect(s.managedSinceMark).toBe(28);
    expect(s.due).toBe(32);
    expect(s.markAt).toBe(500); // the oldest mark: process 1 counted with a later one
    expect(mergeStats([part(0, 1, []), { ...part(1, 1, []), markAt: 0 }]).markAt).toBe(0);
    expect(s.backingOff).toBe(2);
    expect(s.errors['dial:ECONNREFUSED']).toBe(4);
    expect(s.histograms.connect.count).toBe(4);
    expect(s.histograms.connect.max).toBe(40);
    expect(s.memory.processes).toHaveLength(2);
    expect(statusLine(s)).toContain('managed 30');
    const text = await prometheusText(s);
    expect(text).toContain('fleetsim_routers_by_state{state="managed"} 30');
    expect(text).toContain('fleetsim_connect_ms_count 4');
    expect(text).toContain('fleetsim_errors_total{code="dial:ECONNREFUSED"} 4');
    // Valid exposition (the strict reader throws otherwise); the connect times 5, 10, 20 and 40 ms
    // as cumulative buckets, each sample under the first bound above its 3 %-wide bucket.
    const families = parsePrometheusText(text);
    expect(families.get('fleetsim_connect_ms')?.type).toBe('histogram');
    const bucket = (le: string) => sampleValue(families, 'fleetsim_connect_ms_bucket', { le });
    expect([bucket('5'), bucket('10'), bucket('25'), bucket('50'), bucket('+Inf')]).toEqual([0, 1, 3, 4, 4]);
    expect(sampleValue(families, 'fleetsim_connect_ms_sum')).toBe(75);
    expect(sampleValue(families, 'fleetsim_admission_ms_count')).toBe(0);
    expect(sampleValue(families, 'fleetsim_process_cpu_seconds_total')).toBeCloseTo(0.3, 6);
  });

  it('validates scenarios and durations', () => {
    const ok = validateScenario({ server: 'https://x', profiles: 'p', steps: [{ step: 'ramp' }, { step: 'wait', sec: 1 }, { step: 'stop' }] });
    expect(ok.steps).toHaveLength(3);
    expect(() => validateScenario({ server: 'https://x', profiles: 'p', steps: [{ step: 'wait', sec: 1 }] })).toThrow(/first step/);
    expect(() => validateScenario({ server: 'https://x', profiles: 'p', steps: [{ step: 'ramp' }, { step: 'dance' }] })).toThrow(/unknown step/);
    expect(() => validateScenario({ server: 'https://x', profiles: 'p', steps: [{ step: 'ramp' }, { step: 'cut-connections', fraction: 2 }] })).toThrow(/fraction/);
    expect(parseDuration('90')).toBe(90);
    expect(parseDuration('5m')).toBe(300);
    expect(parseDuration('1h')).toBe(3600);
    expect(() => parseDuration('soon')).toThrow(TypeError);
    expect(() => validateScenario({ server: 'localhost:8443', profiles: 'p', steps: [{ step: 'ramp' }] })).toThrow(expect.objectContaining({ code: 'SIM_SERVER_URL_INVALID' }));
    expect(() => validateScenario({ server: 'https://x', profiles: 'p', steps: [] })).toThrow(expect.objectContaining({ code: 'SIM_SCENARIO_INVALID' }));
  });

  it('maps one server URL to the REST base and the channel origin, explicitly, and refuses the rest', () => {
    expect(serverUrls('https://127.0.0.1:8443/')).toEqual({ rest: 'https://127.0.0.1:8443', channelOrigin: 'wss://127.0.0.1:8443', insecure: false });
    expect(serverUrls('wss://fleet.example.com')).toEqual({ rest: 'https://fleet.example.com', channelOrigin: 'wss://fleet.example.com', insecure: false });
    expect(serverUrls('http://127.0.0.1:8080')).toEqual({ rest: 'http://127.0.0.1:8080', channelOrigin: 'ws://127.0.0.1:8080', insecure: true });
    expect(serverUrls('ws://[::1]:8080')).toEqual({ rest: 'http://[::1]:8080', channelOrigin: 'ws://[::1]:8080', insecure: true });
    expect(serverUrls('https://h/prefix/').rest).toBe('https://h/prefix');
    for (const bad of ['localhost:8443', '127.0.0.1:8443', 'ftp://h', 'file:///x', '', 'https://u:p@h']) {
      expect(() => serverUrls(bad), bad).toThrow(expect.objectContaining({ code: 'SIM_SERVER_URL_INVALID' }));
    }
  });

  it('counts a job as failed when a device finished other than succeeded, not while devices are still pending', () => {
    const report = (jobs: unknown[]) => ({ jobs }) as Parameters<typeof failedJobs>[0];
    expect(failedJobs(report([{ id: 'a', uuid: 'u', results: { succeeded: 5 } }]))).toEqual([]);
    expect(failedJobs(report([{ id: 'a', uuid: 'u', results: { succeeded: 3, pending: 2, active: 1 } }]))).toEqual([]);
    expect(failedJobs(report([{ id: 'a', uuid: 'u', results: { succeeded: 3, failed: 2, cancelled: 1 } }]))).toEqual([
      { id: 'a', uuid: 'u', failedDevices: 3, results: { succeeded: 3, failed: 2, cancelled: 1 } },
    ]);
    expect(failedJobs(report([{ id: 'b', uuid: 'v', results: { pending: 4 }, final: { state: 'aborted' } }]))).toMatchObject([{ id: 'b', failedDevices: 0, state: 'aborted' }]);
    expect(failedJobs(report([]))).toEqual([]);
  });

  it('spreads loopback dials over several source addresses, and only on loopback', () => {
    expect(defaultSourceAddresses('wss://127.0.0.1:8443/api/channel', 2000)).toEqual(['127.0.0.1', '127.0.0.2']);
    expect(defaultSourceAddresses('wss://127.0.0.1:8443/api/channel', 50_000)).toHaveLength(4);
    expect(defaultSourceAddresses('wss://fleet.example:8443/api/channel', 50_000)).toEqual([]);
  });

  it('makes telemetry that evolves over time, deterministic per router and within the protocol ranges', () => {
    setTelemetryPeriod(3600);
    let t = Date.UTC(2025, 0, 1);
    const host = { telemetrySeed: 42, clock: { now: () => t } };
    const a = routerMetrics.call(host);
    expect(routerMetrics.call(host)).toEqual(a);
    const seen = new Set<number>();
    for (let h = 0; h < 48; h++) {
      t += 3_600_000;
      const m = routerMetrics.call(host) as Record<string, number>;
      for (const k of ['cpuLoadPercent', 'memoryUsagePercent', 'networkQuality']) {
        expect(m[k]).toBeGreaterThanOrEqual(0);
        expect(m[k]).toBeLessThanOrEqual(100);
      }
      expect(m['throughputBytesIn']).toBeGreaterThan(0);
      seen.add(m['cpuLoadPercent']!);
    }
    expect(seen.size).toBeGreaterThan(20);
    expect(firmwareImage(1000, '1.0.0').equals(firmwareImage(1000, '1.0.0'))).toBe(true);
  });
});

describe('Gate', () => {
  it('holds at most its limit, grants in arrival order, and drops an aborted waiter', async () => {
    const gate = new Gate(2);
    expect(gate.acquire()).toBe(true);
    expect(gate.acquire()).toBe(true);
    const order: string[] = [];
    const a = Promise.resolve(gate.acquire()).then((v) => order.push(`a:${v}`));
    const gone = new AbortController();
    const b = Promise.resolve(gate.acquire(gone.signal)).catch((e: Error) => order.push(`b:${e.message}`));
    const c = Promise.resolve(gate.acquire()).then((v) => order.push(`c:${v}`));
    expect(gate.waiting).toBe(3);
    gone.abort(new Error('stopped'));
    await b;
    expect(gate.waiting).toBe(2);
    gate.release();
    gate.release();
    await Promise.all([a, c]);
    // false: the slot was waited for (the simulator counts those dials as queued).
    expect(order).toEqual(['b:stopped', 'a:false', 'c:false']);
    expect(gate.held).toBe(2);
    expect(new Gate(0).acquire()).toBe(true);
  });
});
