import type { AnalyticsBody, AnalyticsMetrics } from '@router-fleet/protocol';
import type { Platform } from '../platform/platform.js';
import { sanitizeAnalytics } from './privacy.js';

type Sample = AnalyticsBody['samples'][number];

/** Agent-side figures the collector adds to the platform's raw metrics. */
export interface AnalyticsCounters {
  disconnections: number;
  firmwareVersion: string | undefined;
}

/**
 * Collects analytics samples while the account consents: the platform's raw metrics plus the
 * agent's own counters go through the privacy filter, samples are batched, oldest first. Without
 * consent nothing is sampled and what was buffered is discarded.
 */
export class AnalyticsCollector {
  readonly #platform: Platform;
  readonly #periodSec: number;
  readonly #batchSize: number;
  #samples: Sample[] | undefined;
  #consent = false;
  #lastDisconnections = 0;
  #lastBootCount: number;
  droppedValues = 0;

  constructor(platform: Platform, periodSec: number, batchSize: number) {
    this.#platform = platform;
    this.#periodSec = periodSec;
    this.#batchSize = batchSize;
    this.#lastBootCount = platform.system.bootCount() - 1;
  }

  get consent(): boolean {
    return this.#consent;
  }

  setConsent(consent: boolean): void {
    this.#consent = consent;
    if (!consent) this.#samples = undefined;
  }

  /** Takes one sample (only with consent). */
  sample(counters: AnalyticsCounters): void {
    if (!this.#consent) return;
    const system = this.#platform.system;
    const link = this.#platform.network.link();
    const raw: Record<string, unknown> = {
      operatingHours: system.uptimeSec() / 3600,
      ...(link.signalQuality !== undefined ? { networkQuality: link.signalQuality } : {}),
      ...system.metrics(),
      disconnections: Math.max(0, counters.disconnections - this.#lastDisconnections),
      restarts: Math.max(0, system.bootCount() - this.#lastBootCount),
      ...(counters.firmwareVersion ? { firmwareVersion: counters.firmwareVersion } : {}),
    };
    this.#lastDisconnections = counters.disconnections;
    this.#lastBootCount = system.bootCount();
    const { metrics, dropped } = sanitizeAnalytics(raw);
    this.droppedValues += dropped;
    this.#samples ??= [];
    this.#samples.push({ at: this.#platform.clock.now(), periodSec: this.#periodSec, metrics: metrics as AnalyticsMetrics });
    if (this.#samples.length > 100) this.#samples.splice(0, this.#samples.length - 100);
  }

  /** A batch to send, or undefined when fewer than `batchSize` samples are buffered (unless forced). */
  takeBatch(force = false): AnalyticsBody | undefined {
    const samples = this.#samples;
    if (!this.#consent || !samples || samples.length === 0) return undefined;
    if (!force && samples.length < this.#batchSize) return undefined;
    const batch = samples.splice(0, Math.min(100, samples.length));
    if (samples.length === 0) this.#samples = undefined;
    return { samples: batch };
  }

  /** Puts a batch back after a failed send. */
  restore(body: AnalyticsBody): void {
    if (!this.#consent) return;
    this.#samples = [...body.samples, ...(this.#samples ?? [])].slice(-100);
  }
}
