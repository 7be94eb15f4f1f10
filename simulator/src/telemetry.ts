import type { LinkInfo, RawMetrics } from '@router-fleet/agent';

/**
 * Realistic, slowly evolving router telemetry without per-router closures or timers: every value
 * is a pure function of (the router's seed, the time), so thousands of routers share one function.
 * The memory platform calls `metrics` as a method of the router's options object, which carries
 * the router's seed (`telemetrySeed`) and the clock.
 */
export interface TelemetryHost {
  telemetrySeed: number;
  clock?: { now(): number };
}

/** Sample period the throughput counters cover (s); set once per process from the agent's configuration. */
let samplePeriodSec = 3600;
export function setTelemetryPeriod(sec: number): void {
  samplePeriodSec = sec;
}

const DAY_MS = 86_400_000;

/** A deterministic number in [0, 1) from two integers (hash, no state). */
export function unit(seed: number, slot: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(slot + 0x632be5ab, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296;
}

const round1 = (x: number) => Math.round(x * 10) / 10;
const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));

/** Shared `metrics` of every simulated router (`this` is the router's options object). */
export function routerMetrics(this: TelemetryHost): RawMetrics {
  const seed = this.telemetrySeed;
  const now = this.clock?.now() ?? Date.now();
  const slot = Math.floor(now / (samplePeriodSec * 1000));
  // A daily load curve (busiest in the afternoon, local time approximated by the seed) plus noise.
  const phase = unit(seed, -1) * 2 * Math.PI;
  const daily = 0.5 + 0.5 * Math.sin((2 * Math.PI * (now % DAY_MS)) / DAY_MS + phase);
  const baseCpu = 5 + unit(seed, -2) * 30;
  const cpu = clamp(baseCpu + daily * 25 + (unit(seed, slot) - 0.5) * 10, 0, 100);
  // Memory creeps up (a slow leak in some firmware) and drops at each restart (the slot hash).
  const baseMem = 30 + unit(seed, -3) * 30;
  const creep = ((now / 3_600_000) % 168) * 0.05;
  const memory = clamp(baseMem + creep + (unit(seed, slot + 7) - 0.5) * 4, 0, 100);
  const quality = clamp(signalBase(seed) + (unit(seed, slot + 13) - 0.5) * 20, 0, 100);
  const rateIn = (20_000 + unit(seed, -4) * 500_000) * (0.3 + daily);
  const bytesIn = Math.round(rateIn * samplePeriodSec * (0.8 + unit(seed, slot + 21) * 0.4));
  const bytesOut = Math.round(bytesIn * (0.1 + unit(seed, -5) * 0.4));
  return {
    cpuLoadPercent: round1(cpu),
    memoryUsagePercent: round1(memory),
    networkQuality: round1(quality),
    throughputBytesIn: bytesIn,
    throughputBytesOut: bytesOut,
    functionUsage: {
      'vpn.openvpn': unit(seed, -6) < 0.4,
      'vpn.ipsec': unit(seed, -7) < 0.2,
      'firewall.nat': true,
      'modbus.gateway': unit(seed, -8) < 0.3,
    },
  };
}

function signalBase(seed: number): number {
  return 40 + unit(seed, -9) * 55;
}

/** The router's uplink: cellular for most routers, with a signal quality that stays put per router. */
export function routerLink(seed: number, model: string): LinkInfo {
  const quality = round1(signalBase(seed));
  if (/5G/i.test(model)) return { type: '5g', up: true, signalQuality: quality, rssiDbm: Math.round(-110 + quality * 0.6) };
  if (/LTE|L\d00|LW/i.test(model)) return { type: 'lte', up: true, signalQuality: quality, rssiDbm: Math.round(-113 + quality * 0.6) };
  return { type: 'ethernet', up: true };
}
