import type { Clock } from '../clock.js';
import type { Metrics } from '../metrics.js';
import type { Store } from '../store/database.js';
import { AccountEvents } from '../store/events.js';
import type { AccountScope } from '../store/scope.js';
import { forLog } from './snapshots.js';
import { AccountAuditRecords, type AuditRecordRow, type NewAuditRecord } from './chain.js';

/**
 * The one place audit records are written. HTTP calls are recorded by the hooks of `hooks.ts`
 * (every mutating route, from the route table); actions the server takes on its own (Smart Updates
 * jobs) call `recordSystem`. A record that cannot be written is logged and counted, never silently
 * dropped.
 */
export class AuditService {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly metrics: Metrics,
  ) {
    metrics.counter('fleet_audit_records_total', 'Audit records written.');
    metrics.counter('fleet_audit_failures_total', 'Audit records that could not be written.');
  }

  repo(scope: AccountScope | number): AccountAuditRecords {
    return new AccountAuditRecords(this.store, typeof scope === 'number' ? scope : scope.accountId);
  }

  /** Appends a record (values are redacted and bounded here) and, for successful changes, an activity event. */
  record(accountId: number, rec: NewAuditRecord): AuditRecordRow {
    try {
      const row = this.store.write(() => {
        const r = this.repo(accountId).append({
          ...rec,
          request: forLog(rec.request),
          before: forLog(rec.before),
          after: forLog(rec.after),
        });
        if (rec.status < 400) {
          // The activity log (GET /api/events, every plan) shows that something changed, not the details.
          new AccountEvents(this.store, accountId).record({
            type: 'change',
            subject: rec.resourceUuid,
            data: {
              action: rec.action,
              status: rec.status,
              ...(rec.resourceKind ? { resourceKind: rec.resourceKind } : {}),
              ...(rec.actor.username ? { username: rec.actor.username } : {}),
              ...(rec.actor.type === 'system' ? { system: true } : {}),
            },
            at: rec.at,
          });
        }
        return r;
      });
      this.metrics.inc('fleet_audit_records_total');
      return row;
    } catch (err) {
      this.metrics.inc('fleet_audit_failures_total');
      throw err;
    }
  }

  /** An action the server took by itself (no user). */
  recordSystem(
    accountId: number,
    action: string,
    opts: { resourceKind?: string; resourceUuid?: string; after?: unknown; before?: unknown } = {},
  ): AuditRecordRow {
    return this.record(accountId, {
      at: this.clock.now(),
      actor: { type: 'system' },
      action,
      resourceKind: opts.resourceKind ?? null,
      resourceUuid: opts.resourceUuid ?? null,
      status: 200,
      request: null,
      before: opts.before ?? null,
      after: opts.after ?? null,
    });
  }
}
