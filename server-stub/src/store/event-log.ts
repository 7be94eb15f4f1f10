import type { Store, StoreDialect } from './database.js';

export const SEVERITIES = ['debug', 'info', 'warning', 'error', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** System events that are worth a warning in the activity log (every other system event is info). */
const WARNING_TYPES = [
  'licence.expiry-notice',
  'licence.expired',
  'licence.invalidated',
  'devices.unmanaged',
  'job.aborted',
];

/** A text field of the event's JSON data, per dialect. */
const DATA_FIELD: Readonly<Record<StoreDialect, (field: string) => string>> = {
  sqlite: (field) => `json_extract(data, '$.${field}')`,
  postgres: (field) => `(data::jsonb->>'${field}')`,
};

/** Kind: a device event's own kind, else the event type. */
const kindSql = (d: StoreDialect) => `CASE WHEN type = 'device.event' THEN ${DATA_FIELD[d]('kind')} ELSE type END`;
const severitySql = (d: StoreDialect) => `CASE WHEN type = 'device.event' THEN ${DATA_FIELD[d]('severity')}
  WHEN type IN (${WARNING_TYPES.map((t) => `'${t}'`).join(', ')}) THEN 'warning' ELSE 'info' END`;
const rankSql = (d: StoreDialect) => `CASE (${severitySql(d)}) ${SEVERITIES.map((s, i) => `WHEN '${s}' THEN ${i}`).join(' ')} ELSE 1 END`;

/** The columns of an EventLogRow (kind and severity derived in SQL), per dialect. */
export const eventLogColumns = (d: StoreDialect) => `id, type, subject, ${kindSql(d)} AS kind, ${severitySql(d)} AS severity, data, at`;

export interface EventLogFilter {
  /** Events of this device (device events and system events about it). */
  subject?: string;
  source?: 'device' | 'system';
  kind?: string;
  severity?: Severity;
  minSeverity?: Severity;
  from?: number;
  to?: number;
}

export interface EventLogRow {
  id: number;
  type: string;
  subject: string | null;
  kind: string;
  severity: Severity;
  data: string;
  at: number;
}

/**
 * The account's activity log read as one list: device events (stored by the control channel as
 * `device.event`) and system changes (licences, admission, jobs, API changes), filtered in SQL.
 * Every statement carries `account_id = ?`.
 */
export class AccountEventLog {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  list(opts: { beforeId: number; limit: number; filter: EventLogFilter }): EventLogRow[] {
    const f = opts.filter;
    const d = this.store.dialect;
    const where = ['account_id = ?', 'id < ?'];
    const params: unknown[] = [this.accountId, opts.beforeId];
    if (f.subject !== undefined) {
      where.push('subject = ?');
      params.push(f.subject);
    }
    if (f.source === 'device') where.push(`type = 'device.event'`);
    if (f.source === 'system') where.push(`type != 'device.event'`);
    if (f.kind !== undefined) {
      where.push(`(${kindSql(d)}) = ?`);
      params.push(f.kind);
    }
    if (f.severity !== undefined) {
      where.push(`(${severitySql(d)}) = ?`);
      params.push(f.severity);
    }
    if (f.minSeverity !== undefined) {
      where.push(`(${rankSql(d)}) >= ?`);
      params.push(SEVERITIES.indexOf(f.minSeverity));
    }
    if (f.from !== undefined) {
      where.push('at >= ?');
      params.push(f.from);
    }
    if (f.to !== undefined) {
      where.push('at < ?');
      params.push(f.to);
    }
    params.push(opts.limit);
    // Only fixed SQL fragments are spliced in; every value is a bound parameter.
    return this.store
      .stmt<EventLogRow>(
        `SELECT ${eventLogColumns(d)} FROM account_events
         WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT ?`,
      )
      .all(...params);
  }
}
