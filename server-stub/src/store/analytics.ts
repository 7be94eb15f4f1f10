import { dialects, type Store, type StoreDialect } from './database.js';

/** What ingesting a device's analytics needs to know about it. */
export interface AnalyticsDevice {
  id: number;
  account_id: number;
  model: string | null;
  firmware: string | null;
  /** The account's settings (JSON): whether it consented. */
  settings: string;
}

/** One sample to store, already filtered by the privacy rule. */
export interface AnalyticsSampleInput {
  readonly model: string | null;
  readonly firmware: string | null;
  readonly at: number;
  readonly periodSec: number;
  /** JSON of the sanitised metrics. */
  readonly metrics: string;
}

/** Totals and averages of one (model, firmware) over a period, as SQL aggregates them. */
export interface AnalyticsAggregateRow {
  model: string | null;
  firmware: string | null;
  devices: number;
  samples: number;
  period_sec: number;
  operating_hours: number | null;
  disconnections: number | null;
  restarts: number | null;
  cpu: number | null;
  memory: number | null;
  quality: number | null;
  bytes_in: number | null;
  bytes_out: number | null;
}

/** Reads the metric `k` of a stored sample (metric names are constants of this file, never values). */
const METRIC: Readonly<Record<StoreDialect, (k: string) => string>> = {
  sqlite: (k) => `json_extract(metrics, '$.${k}')`,
  postgres: (k) => `(metrics::jsonb->>'${k}')::DOUBLE PRECISION`,
};

const aggregatesSql = (metric: (k: string) => string) => `SELECT model, firmware, COUNT(DISTINCT device_id) AS devices, COUNT(*) AS samples,
    SUM(period_sec) AS period_sec,
    AVG(${metric('operatingHours')}) AS operating_hours,
    SUM(${metric('disconnections')}) AS disconnections,
    SUM(${metric('restarts')}) AS restarts,
    AVG(${metric('cpuLoadPercent')}) AS cpu,
    AVG(${metric('memoryUsagePercent')}) AS memory,
    AVG(${metric('networkQuality')}) AS quality,
    SUM(${metric('throughputBytesIn')}) AS bytes_in,
    SUM(${metric('throughputBytesOut')}) AS bytes_out
  FROM analytics_samples
  WHERE account_id = ? AND (? IS NULL OR at >= ?) AND (? IS NULL OR at < ?) AND (? IS NULL OR model = ?)
  GROUP BY model, firmware ORDER BY model, firmware`;
const AGGREGATES_SQL = dialects({ sqlite: aggregatesSql(METRIC.sqlite), postgres: aggregatesSql(METRIC.postgres) });

/** Analytics samples of one account. Every statement carries `account_id = ?`. */
export class AccountAnalytics {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  /** Stores samples of device `deviceId` (run it in the caller's write transaction). */
  insertSamples(deviceId: number, samples: readonly AnalyticsSampleInput[], receivedAt: number): void {
    const insert = this.store.stmt(
      `INSERT INTO analytics_samples (account_id, device_id, model, firmware, at, period_sec, metrics, received_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    for (const s of samples) {
      insert.run(this.accountId, deviceId, s.model, s.firmware, s.at, s.periodSec, s.metrics, receivedAt);
    }
  }

  /** Aggregates per model and firmware over the samples whose period ended in [from, to). */
  aggregates(opts: { from?: number; to?: number; model?: string }): AnalyticsAggregateRow[] {
    return this.store
      .stmt<AnalyticsAggregateRow>(AGGREGATES_SQL)
      .all(
        this.accountId,
        opts.from ?? null,
        opts.from ?? null,
        opts.to ?? null,
        opts.to ?? null,
        opts.model ?? null,
        opts.model ?? null,
      );
  }
}

/**
 * The device `deviceUuid` if it belongs to `account` (the account uuid or its row id, as the control
 * channel knows it), with the account's settings.
 */
export function analyticsDevice(store: Store, deviceUuid: string, account: string | number): AnalyticsDevice | undefined {
  return store
    .stmt<AnalyticsDevice>(
      `SELECT d.id, d.account_id, d.model, d.firmware, a.settings FROM devices d JOIN accounts a ON a.id = d.account_id
       WHERE d.uuid = ? AND (a.uuid = ? OR a.id = ?)`,
    )
    .get(deviceUuid, String(account), typeof account === 'number' ? account : -1);
}
