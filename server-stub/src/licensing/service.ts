import { randomUUID } from 'node:crypto';
import type { AdmissionService } from '../admission/service.js';
import type { Clock } from '../clock.js';
import { type ImportReport, parseCsv, type RowError, rowObject } from '../csv.js';
import { AppError, isAppError } from '../errors.js';
import type { Store } from '../store/database.js';
import type { LicenceRecord } from '../store/licences.js';
import { VendorCodes } from '../store/licences.js';
import type { AccountScope } from '../store/scope.js';
import { generateCode, normaliseCode } from './codes.js';
import { ARTICLES, type Feature, type LicenceKind } from './plans.js';
import {
  checkActivate,
  checkRedeem,
  type Entitlement,
  entitlement,
  type LicenceStatus,
  licenceStatus,
  stockDeadline,
} from './rules.js';

export interface LicenceView extends LicenceRecord {
  readonly status: LicenceStatus;
  readonly stockDeadline: number;
}

/** Redemption, bulk import, activation and the gates that plans put on features. */
export class LicensingService {
  readonly #codes: VendorCodes;

  constructor(
    store: Store,
    private readonly clock: Clock,
    private readonly admission: AdmissionService,
  ) {
    this.#codes = new VendorCodes(store);
  }

  /** Vendor side (`fleet-server licences issue`): creates `count` new codes of `kind`. */
  issue(kind: LicenceKind, count: number, now: number = this.clock.now()): string[] {
    const codes = new Set<string>();
    while (codes.size < count) {
      const code = generateCode();
      if (!this.#codes.get(code)) codes.add(code);
    }
    const list = [...codes];
    this.#codes.insertMany(
      list.map((code) => ({ code, kind })),
      now,
    );
    return list;
  }

  entitlement(scope: AccountScope, now: number = this.clock.now()): Entitlement {
    return entitlement(scope.licences.all(), now);
  }

  list(scope: AccountScope, now: number = this.clock.now()): LicenceView[] {
    const all = scope.licences.all();
    return all.map((l) => ({ ...l, status: licenceStatus(l, all, now), stockDeadline: stockDeadline(l.issuedAt) }));
  }

  view(scope: AccountScope, uuid: string, now: number = this.clock.now()): LicenceView | undefined {
    return this.list(scope, now).find((l) => l.uuid === uuid);
  }

  redeem(scope: AccountScope, input: string, now: number = this.clock.now()): LicenceView {
    const uuid = scope.write(() => this.#redeemOne(scope, input, now));
    return this.view(scope, uuid, now)!;
  }

  /** Bulk import of the vendor's CSV (a `code` column; other columns are ignored). */
  importCsv(scope: AccountScope, body: Buffer | string, partial: boolean, maxRows: number): ImportReport {
    const now = this.clock.now();
    const table = parseCsv(body, maxRows);
    if (!table.header.includes('code')) throw new AppError('SERVER_CSV_INVALID', 'The CSV header has no "code" column.');
    const errors: RowError[] = [];
    let imported = 0;
    const run = () => {
      for (const row of table.rows) {
        const obj = rowObject(table.header, row);
        if (!obj) {
          errors.push({ line: row.line, code: 'SERVER_CSV_INVALID', message: 'Wrong number of cells.' });
          continue;
        }
        try {
          scope.savepoint(() => this.#redeemOne(scope, obj['code'] ?? '', now));
          imported++;
        } catch (err) {
          if (!isAppError(err)) throw err;
          errors.push({ line: row.line, code: err.code, message: err.message });
        }
      }
      if (errors.length > 0 && !partial) throw new RollBack();
    };
    try {
      scope.write(run);
    } catch (err) {
      if (!(err instanceof RollBack)) throw err;
      throw new AppError('SERVER_CSV_ROWS_INVALID', undefined, {
        details: {
          rows: table.rows.length,
          imported: 0,
          failed: errors.length,
          partial,
          errors,
        } satisfies ImportReport,
      });
    }
    return { rows: table.rows.length, imported, failed: errors.length, partial, errors };
  }

  /** Activates now (`at` omitted) or schedules activation at `at`. */
  activate(scope: AccountScope, uuid: string, at: number | undefined, now: number = this.clock.now()): LicenceView {
    scope.write(() => {
      const all = scope.licences.all();
      const licence = all.find((l) => l.uuid === uuid);
      if (!licence) throw new AppError('SERVER_NOT_FOUND');
      const start = at ?? now;
      const end = checkActivate(licence, all, start, now);
      scope.licences.setActivation(licence.id, start, end);
      scope.events.record({
        type: start > now ? 'licence.activation-scheduled' : 'licence.activation-requested',
        subject: licence.uuid,
        data: { licence: licence.uuid, kind: licence.kind, activationAt: new Date(start).toISOString() },
        at: now,
      });
    });
    // Seats and Free invalidation change with the activation: rebalance and record due events now.
    this.admission.sweepAccount(scope.accountId, now);
    return this.view(scope, uuid, now)!;
  }

  /** Throws the plan gate error unless the account's plan in force includes `feature`. */
  requireFeature(scope: AccountScope, feature: Feature, now: number = this.clock.now()): Entitlement {
    const ent = this.entitlement(scope, now);
    if (ent.plan === null) throw new AppError('SERVER_NO_ACTIVE_LICENCE');
    if (!ent.features.has(feature)) {
      throw new AppError('SERVER_PLAN_FEATURE_UNAVAILABLE', `The ${ent.plan} plan does not include ${feature}.`, {
        details: { feature, plan: ent.plan },
      });
    }
    return ent;
  }

  /** Throws unless a plan licence is active (device management is disabled otherwise). */
  requireActivePlan(scope: AccountScope, now: number = this.clock.now()): Entitlement {
    const ent = this.entitlement(scope, now);
    if (ent.plan === null) throw new AppError('SERVER_NO_ACTIVE_LICENCE');
    return ent;
  }

  #redeemOne(scope: AccountScope, input: string, now: number): string {
    const code = normaliseCode(input);
    if (!code) throw new AppError('SERVER_LICENCE_CODE_MALFORMED');
    const vendor = this.#codes.get(code);
    if (!vendor) throw new AppError('SERVER_LICENCE_CODE_UNKNOWN');
    checkRedeem(
      { kind: vendor.plan, issuedAt: vendor.issued_at, redeemedAt: vendor.redeemed_at },
      scope.licences.all(),
      now,
    );
    const uuid = randomUUID();
    scope.licences.insert({
      uuid,
      code,
      kind: vendor.plan,
      seats: ARTICLES[vendor.plan].seats,
      issuedAt: vendor.issued_at,
      redeemedAt: now,
    });
    this.#codes.markRedeemed(code, scope.accountId, now);
    scope.events.record({ type: 'licence.redeemed', subject: uuid, data: { licence: uuid, kind: vendor.plan }, at: now });
    return uuid;
  }
}

class RollBack extends Error {}
