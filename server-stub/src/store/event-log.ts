import type { Store } from './database.js';

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

/** Kind: a device event's own kind, else the event type. */
const KIND_SQL = `CASE WHEN type = 'device.event' THEN json_extract(data, '$.kind') ELSE type END`;
const SEVERITY_SQL = `CASE WHEN type = 'device.event' THEN json_extract(data, '$.severity')
  WHEN type IN (${WARNING_TYPES.map((t) => `'${t}'`).join(', ')}) THEN 'warning' ELSE 'info' END`;
const RANK_SQL = `CASE (${SEVERITY_SQL}) ${SEVERITIES.map((s, i) => `WHEN '${s}' THEN ${i}`).join(' ')} ELSE 1 END`;

/** The columns of an EventLogRow (kind and severity derived in SQL). */
export const EVENT_LOG_COLUMNS = `id, type, subject, ${KIND_SQL} AS kind, ${SEVERITY_SQL} AS severity, data, at`;

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
    const where = ['account_id = ?', 'id < ?'];
    const params: unknown[] = [this.accountId, opts.beforeId];
    if (f.subject !== undefined) {
      where.push('subject = ?');
      params.push(f.subject);
    }
    if (f.source === 'device') where.push(`type = 'device.event'`);
    if (f.source === 'system') where.push(`type != 'device.event'`);
    if (f.kind !== undefined) {
      where.push(`(${KIND_SQL}) = ?`);
      params.push(f.kind);
    }
    if (f.severity !== undefined) {
      where.push(`(${SEVERITY_SQL}) = ?`);
      params.push(f.severity);
    }
    if (f.minSeverity !== undefined) {
      where.push(`(${RANK_SQL}) >= ?`);
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
        `SELECT ${EVENT_LOG_COLUMNS} FROM account_events
         WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT ?`,
      )
      .all(...params);
  }
}
