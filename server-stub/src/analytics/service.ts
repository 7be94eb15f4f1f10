import { EventEmitter } from 'node:events';
import { type AnalyticsMetrics, filterAnalyticsMetrics } from '@router-fleet/protocol';
import type { NoticeBus } from '../channel/notices.js';
import type { Clock } from '../clock.js';
import type { LicensingService } from '../licensing/service.js';
import { type AccountRowId, type AccountUuid, asAccountRowId, asAccountUuid } from '../ids.js';
import type { Metrics } from '../metrics.js';
import { Accounts } from '../store/accounts.js';
import { AccountAnalytics, analyticsDevice } from '../store/analytics.js';
import type { Store } from '../store/database.js';
import type { AccountScope } from '../store/scope.js';

/** A consent change, as `analytics.events` emits it. */
export interface ConsentEvent {
  /** What control-channel sessions and notices carry. */
  readonly accountUuid: AccountUuid;
  readonly accountKey: AccountRowId;
  readonly consent: boolean;
  readonly at: number;
}

export interface AnalyticsEvents {
  on(event: 'consent', listener: (e: ConsentEvent) => void): this;
  off(event: 'consent', listener: (e: ConsentEvent) => void): this;
  emit(event: 'consent', e: ConsentEvent): boolean;
}

export interface ConsentView {
  /** null: never decided. */
  consent: boolean | null;
  decidedAt: number | null;
  /** The question must be asked: a plan licence is active and the account never decided. */
  askRequired: boolean;
}

export interface IngestResult {
  /** Samples stored. */
  stored: number;
  /** Keys dropped by the privacy rule (not in ANALYTICS_METRICS) or with a value of the wrong shape. */
  droppedKeys: number;
  /** Samples refused whole (malformed, or no consent). */
  droppedSamples: number;
  reason?: 'no-consent' | 'unknown-device';
}

const MAX_SAMPLES = 100;
const NUMBER_METRICS = new Set([
  'operatingHours',
  'disconnections',
  'restarts',
  'throughputBytesIn',
  'throughputBytesOut',
]);
const PERCENT_METRICS = new Set(['networkQuality', 'cpuLoadPercent', 'memoryUsagePercent']);
const VERSION = /^[0-9A-Za-z][0-9A-Za-z.+~-]{0,63}$/;
const FUNCTION_NAME = /^[a-z][a-z0-9_.-]{0,47}$/;

/**
 * Keeps a metric only if its value has the documented shape: a number where a number is expected,
 * a version string, a map of function names to booleans. A string smuggled into a numeric metric
 * (an address, a URL) is dropped like an unknown key.
 */
function wellFormed(key: string, value: unknown): { ok: boolean; value?: unknown; dropped: number } {
  if (NUMBER_METRICS.has(key)) {
    return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? { ok: true, value, dropped: 0 } : { ok: false, dropped: 1 };
  }
  if (PERCENT_METRICS.has(key)) {
    return typeof value === 'number' && value >= 0 && value <= 100 ? { ok: true, value, dropped: 0 } : { ok: false, dropped: 1 };
  }
  if (key === 'firmwareVersion') {
    return typeof value === 'string' && VERSION.test(value) ? { ok: true, value, dropped: 0 } : { ok: false, dropped: 1 };
  }
  if (key === 'functionUsage') {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, dropped: 1 };
    const out: Record<string, boolean> = {};
    let dropped = 0;
    for (const [k, v] of Object.entries(value).slice(0, 64)) {
      if (FUNCTION_NAME.test(k) && typeof v === 'boolean') out[k] = v;
      else dropped++;
    }
    dropped += Math.max(0, Object.keys(value).length - 64);
    return { ok: Object.keys(out).length > 0, value: out, dropped };
  }
  return { ok: false, dropped: 1 };
}

/** The privacy rule on the server: allowed metrics of the right shape only; returns what was dropped. */
export function sanitizeMetrics(metrics: Record<string, unknown>): { metrics: AnalyticsMetrics; dropped: number } {
  const filtered = filterAnalyticsMetrics(metrics);
  let dropped = filtered.dropped;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(filtered.metrics)) {
    const r = wellFormed(k, v);
    dropped += r.dropped;
    if (r.ok) out[k] = r.value;
  }
  return { metrics: out as AnalyticsMetrics, dropped };
}

function settingsOf(store: Store, accountId: number): Record<string, unknown> {
  const row = new Accounts(store).byId(accountId);
  return row ? (JSON.parse(row.settings) as Record<string, unknown>) : {};
}

/**
 * icom OS device analytics: the account's consent (one decision for all its devices, stored as
 * the `analyticsConsent` account setting the control channel sends in `welcome`/`settings`),
 * ingestion of device samples (the channel calls `ingest`) and aggregates per model and firmware.
 */
export class AnalyticsService {
  readonly events: AnalyticsEvents = new EventEmitter() as AnalyticsEvents;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly licensing: LicensingService,
    private readonly notices: NoticeBus,
    private readonly metrics: Metrics,
  ) {
    metrics.counter('fleet_analytics_samples_total', 'Analytics samples received, by outcome (stored, no-consent, malformed).');
    metrics.counter(
      'fleet_analytics_dropped_keys_total',
      'Analytics metric keys dropped by the server\'s privacy rule (not allowed, or of the wrong shape).',
    );
  }

  consent(scope: AccountScope): ConsentView {
    const s = settingsOf(this.store, scope.accountId);
    const consent = typeof s['analyticsConsent'] === 'boolean' ? s['analyticsConsent'] : null;
    const decidedAt = typeof s['analyticsConsentAt'] === 'number' ? s['analyticsConsentAt'] : null;
    const plan = this.licensing.entitlement(scope).plan;
    return { consent, decidedAt: consent === null ? null : decidedAt, askRequired: consent === null && plan !== null };
  }

  /** Records the decision; a change reaches connected devices at once (notice → `settings` message). */
  setConsent(scope: AccountScope, consent: boolean): ConsentView {
    const now = this.clock.now();
    const changed = scope.write(() => {
      const s = settingsOf(this.store, scope.accountId);
      const before = s['analyticsConsent'] === true;
      const decided = typeof s['analyticsConsent'] === 'boolean';
      scope.updateAccount({ settings: { ...s, analyticsConsent: consent, analyticsConsentAt: now } });
      return !decided || before !== consent;
    });
    if (changed) this.announce(scope.account().uuid, consent);
    return this.consent(scope);
  }

  /**
   * Tells every process's open sessions of the account (the notice bus crosses cluster workers; the
   * channel turns it into a `settings` message) and this process's listeners (`events`).
   */
  announce(accountUuid: string, consent: boolean): void {
    const accountKey = new Accounts(this.store).idOf(accountUuid);
    this.notices.publish({ kind: 'settings', accountUuid: asAccountUuid(accountUuid), analyticsConsent: consent });
    this.events.emit('consent', {
      accountUuid: asAccountUuid(accountUuid),
      accountKey: asAccountRowId(accountKey ?? 0),
      consent,
      at: this.clock.now(),
    });
  }

  /**
   * Ingests one `analytics` message body of a device (called by the control channel). Re-applies
   * the privacy rule (anything outside ANALYTICS_METRICS, or of the wrong shape, is dropped and
   * counted) and stores nothing unless the account has consented. `account` is the account uuid
   * (as in SessionInfo) or its internal id. Never throws on bad input.
   */
  ingest(deviceUuid: string, account: string | number, body: unknown): IngestResult {
    const samples = (body as { samples?: unknown } | null)?.samples;
    const list = Array.isArray(samples) ? samples.slice(0, MAX_SAMPLES) : [];
    const device = analyticsDevice(this.store, deviceUuid, account);
    if (!device) {
      this.metrics.inc('fleet_analytics_samples_total', { outcome: 'unknown-device' }, list.length);
      return { stored: 0, droppedKeys: 0, droppedSamples: list.length, reason: 'unknown-device' };
    }
    const consent = (JSON.parse(device.settings) as { analyticsConsent?: unknown }).analyticsConsent === true;
    if (!consent) {
      this.metrics.inc('fleet_analytics_samples_total', { outcome: 'no-consent' }, list.length);
      return { stored: 0, droppedKeys: 0, droppedSamples: list.length, reason: 'no-consent' };
    }
    const now = this.clock.now();
    let droppedKeys = 0;
    let droppedSamples = 0;
    const rows: { at: number; periodSec: number; metrics: AnalyticsMetrics }[] = [];
    for (const s of list) {
      const sample = s as { at?: unknown; periodSec?: unknown; metrics?: unknown } | null;
      const at = sample?.at;
      const periodSec = sample?.periodSec;
      if (
        typeof at !== 'number' || !Number.isSafeInteger(at) || at < 0
        || typeof periodSec !== 'number' || !Number.isInteger(periodSec) || periodSec < 1 || periodSec > 604_800
        || typeof sample?.metrics !== 'object' || sample.metrics === null || Array.isArray(sample.metrics)
      ) {
        droppedSamples++;
        continue;
      }
      const clean = sanitizeMetrics(sample.metrics as Record<string, unknown>);
      droppedKeys += clean.dropped;
      rows.push({ at, periodSec, metrics: clean.metrics });
    }
    if (rows.length > 0) {
      const samples = rows.map((r) => ({
        model: device.model,
        firmware: r.metrics.firmwareVersion ?? device.firmware,
        at: r.at,
        periodSec: r.periodSec,
        metrics: JSON.stringify(r.metrics),
      }));
      this.store.write(() => new AccountAnalytics(this.store, device.account_id).insertSamples(device.id, samples, now));
    }
    if (droppedKeys > 0) this.metrics.inc('fleet_analytics_dropped_keys_total', undefined, droppedKeys);
    this.metrics.inc('fleet_analytics_samples_total', { outcome: 'stored' }, rows.length);
    if (droppedSamples > 0) this.metrics.inc('fleet_analytics_samples_total', { outcome: 'malformed' }, droppedSamples);
    return { stored: rows.length, droppedKeys, droppedSamples };
  }

  /** Aggregates per model and firmware over the samples whose period ended in [from, to). */
  aggregates(scope: AccountScope, opts: { from?: number; to?: number; model?: string }) {
    const rows = new AccountAnalytics(this.store, scope.accountId).aggregates(opts);
    const round = (v: number | null, digits = 2) => (v === null ? null : Math.round(v * 10 ** digits) / 10 ** digits);
    return rows.map((r) => {
      const days = r.period_sec / 86_400;
      return {
        model: r.model,
        firmware: r.firmware,
        devices: r.devices,
        samples: r.samples,
        sampledHours: round(r.period_sec / 3600),
        operatingHoursAvg: round(r.operating_hours),
        disconnections: r.disconnections ?? 0,
        disconnectionsPerDay: days > 0 ? round((r.disconnections ?? 0) / days) : null,
        restarts: r.restarts ?? 0,
        restartsPerDay: days > 0 ? round((r.restarts ?? 0) / days) : null,
        cpuLoadPercentAvg: round(r.cpu),
        memoryUsagePercentAvg: round(r.memory),
        networkQualityAvg: round(r.quality),
        throughputBytesIn: r.bytes_in ?? 0,
        throughputBytesOut: r.bytes_out ?? 0,
        throughputBytesPerSecond: r.period_sec > 0 ? round(((r.bytes_in ?? 0) + (r.bytes_out ?? 0)) / r.period_sec) : null,
      };
    });
  }
}
