import { randomUUID } from 'node:crypto';
import type { AdmissionService } from '../admission/service.js';
import type { Clock } from '../clock.js';
import { type ImportReport, parseCsv, type RowError, rowObject } from '../csv.js';
import { AppError, isAppError } from '../errors.js';
import { LICENCE_CSV_CODE_COLUMN } from '../import-columns.js';
import type { Store } from '../store/database.js';
import type { LicenceRecord } from '../store/licences.js';
import { VendorCodes } from '../store/licences.js';
import { Identities } from '../store/accounts.js';
import type { NewAccountEvent } from '../store/events.js';
import { AccountScope } from '../store/scope.js';
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

/** A line of a licence import that redeemed its code. */
export interface ImportedLicence {
  /** Line in the file. */
  readonly line: number;
  readonly code: string;
  readonly uuid: string;
}

/** The licence import's report: the lines redeemed besides the refused ones. */
export interface LicenceImportReport extends ImportReport {
  readonly accepted: ImportedLicence[];
}

export interface LicenceView extends LicenceRecord {
  readonly status: LicenceStatus;
  readonly stockDeadline: number;
}

/** Redemption, bulk import, activation and the gates that plans put on features. */
export class LicensingService {
  readonly #codes: VendorCodes;

  constructor(
    private readonly store: Store,
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
    const all = scope.licences.all();
    const l = all.find((x) => x.uuid === uuid);
    // Only this licence's view is built: a Free licence's status reads the others, no status reads more.
    return l && { ...l, status: licenceStatus(l, all, now), stockDeadline: stockDeadline(l.issuedAt) };
  }

  redeem(scope: AccountScope, input: string, now: number = this.clock.now()): LicenceView {
    const uuid = scope.write(() => this.#redeemOne(scope, input, now));
    return this.view(scope, uuid, now)!;
  }

  /**
   * Bulk import of the vendor's CSV (a `code` column; other columns are ignored): one transaction,
   * all or nothing unless `partial` is asked for. A code written twice in the file is refused on
   * its second line (SERVER_LICENCE_CODE_DUPLICATE), not reported as redeemed by the first.
   */
  importCsv(scope: AccountScope, body: Buffer | string, partial: boolean, maxRows: number): LicenceImportReport {
    const now = this.clock.now();
    const table = parseCsv(body, maxRows);
    if (!table.header.includes(LICENCE_CSV_CODE_COLUMN)) {
      throw new AppError('SERVER_CSV_INVALID', `The CSV header has no "${LICENCE_CSV_CODE_COLUMN}" column.`);
    }
    const errors: RowError[] = [];
    let accepted: ImportedLicence[] = [];
    const run = () => {
      const seen = new Set<string>();
      // The account's licences, read once and kept up to date as codes are redeemed.
      const held = scope.licences.all();
      for (const row of table.rows) {
        const obj = rowObject(table.header, row);
        if (!obj) {
          errors.push({ line: row.line, code: 'SERVER_CSV_INVALID', message: 'Wrong number of cells.' });
          continue;
        }
        try {
          const input = obj[LICENCE_CSV_CODE_COLUMN] ?? '';
          const code = normaliseCode(input);
          if (code !== undefined && seen.has(code)) throw new AppError('SERVER_LICENCE_CODE_DUPLICATE');
          if (code !== undefined) seen.add(code);
          const uuid = scope.savepoint(() => this.#redeemOne(scope, input, now, held));
          accepted.push({ line: row.line, code: code!, uuid });
        } catch (err) {
          if (!isAppError(err)) throw err;
          errors.push({ line: row.line, code: err.code, message: err.message });
        }
      }
      if (errors.length > 0 && !partial) throw new RollBack();
    };
    let rolledBack = false;
    try {
      scope.write(run);
    } catch (err) {
      if (!(err instanceof RollBack)) throw err;
      rolledBack = true;
      accepted = [];
    }
    const report: LicenceImportReport = { rows: table.rows.length, imported: accepted.length, failed: errors.length, partial, errors, accepted };
    if (rolledBack) throw new AppError('SERVER_CSV_ROWS_INVALID', undefined, { details: report });
    return report;
  }

  /** Activates now (`at` omitted) or schedules activation at `at`. */
  activate(scope: AccountScope, uuid: string, at: number | undefined, now: number = this.clock.now()): LicenceView {
    scope.write(() => {
      const all = scope.licences.all();
      const licence = all.find((l) => l.uuid === uuid);
      if (!licence) throw new AppError('SERVER_NOT_FOUND');
      this.#activateOne(scope, licence, all, at ?? now, now);
    });
    // Seats and Free invalidation change with the activation: rebalance and record due events now.
    this.admission.sweepAccount(scope.accountId, now);
    return this.view(scope, uuid, now)!;
  }

  /**
   * Activates many licences in one transaction: all of them or none. `uuids` omitted means every
   * licence that is Available now (a fresh account's stock: one call instead of one per code).
   * A licence that cannot be activated rolls the whole call back with SERVER_LICENCE_BULK_ACTIVATION,
   * whose details list each refused licence with its own code.
   */
  activateMany(scope: AccountScope, uuids: readonly string[] | undefined, at: number | undefined, now: number = this.clock.now()): LicenceView[] {
    const start = at ?? now;
    const activated: string[] = [];
    const errors: { licence: string; code: string; message: string }[] = [];
    try {
      scope.write(() => {
        const before = scope.licences.all();
        const targets = uuids ?? before.filter((l) => licenceStatus(l, before, now) === 'available').map((l) => l.uuid);
        // The licences as they stand after the activations so far: whether a Free licence may join
        // depends on the ones before it. Read once and kept up to date here (re-reading them after
        // each activation was O(n²) rows); written together at the end.
        const all = [...before];
        const index = new Map(all.map((l, i) => [l.uuid, i]));
        const changes: { id: number; activationAt: number; expiresAt: number }[] = [];
        const events: NewAccountEvent[] = [];
        for (const uuid of new Set(targets)) {
          const i = index.get(uuid);
          const licence = i === undefined ? undefined : all[i];
          try {
            if (!licence || i === undefined) throw new AppError('SERVER_NOT_FOUND', 'No such licence in this account.');
            const end = checkActivate(licence, all, start, now);
            all[i] = { ...licence, activationAt: start, expiresAt: end };
            changes.push({ id: licence.id, activationAt: start, expiresAt: end });
            events.push(activationEvent(licence, start, now));
            activated.push(uuid);
          } catch (err) {
            if (!isAppError(err)) throw err;
            errors.push({ licence: uuid, code: err.code, message: err.message });
          }
        }
        if (errors.length > 0) throw new RollBack();
        scope.licences.setActivations(changes);
        scope.events.recordMany(events);
      });
    } catch (err) {
      if (!(err instanceof RollBack)) throw err;
      throw new AppError('SERVER_LICENCE_BULK_ACTIVATION', `${errors.length} of ${errors.length + activated.length} licences cannot be activated; none was.`, {
        details: { errors },
      });
    }
    if (activated.length > 0) this.admission.sweepAccount(scope.accountId, now);
    const views = new Map(this.list(scope, now).map((l) => [l.uuid, l]));
    return activated.map((uuid) => views.get(uuid)!);
  }

  /** Activates one licence at `start` (checked against the account's others) and records the event; inside a write. */
  #activateOne(scope: AccountScope, licence: LicenceRecord, all: readonly LicenceRecord[], start: number, now: number): void {
    const end = checkActivate(licence, all, start, now);
    scope.licences.setActivation(licence.id, start, end);
    scope.events.record(activationEvent(licence, start, now));
  }

  /**
   * `fleet-server licences activate`: redeems `codes` (one transaction) and activates them (another,
   * all or none). Without codes, activates every Available licence. When activation is refused the
   * codes stay redeemed (Available), so the same command without codes, or with a later `at`, finishes the job.
   */
  redeemAndActivate(scope: AccountScope, codes: readonly string[], at: number | undefined, now: number = this.clock.now()): LicenceView[] {
    if (codes.length === 0) return this.activateMany(scope, undefined, at, now);
    const uuids = scope.write(() => {
      // The account's licences, read once and kept up to date as codes are redeemed (each
      // redemption is judged against the ones before it, as if redeemed one by one).
      const held = scope.licences.all();
      return codes.map((code) => this.#redeemOne(scope, code, now, held));
    });
    return this.activateMany(scope, uuids, at, now);
  }

  /** The scope of the account that user `username` belongs to (offline CLI commands). */
  scopeOfUser(username: string): AccountScope {
    const user = new Identities(this.store).userByUsername(username);
    if (!user) throw new AppError('SERVER_NOT_FOUND', `No user named ${username}.`);
    return new AccountScope(this.store, user.account_id);
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

  /** Redeems one code, judged against `held` (the account's licences; read when not given, appended to when given). */
  #redeemOne(scope: AccountScope, input: string, now: number, held?: LicenceRecord[]): string {
    const code = normaliseCode(input);
    if (!code) throw new AppError('SERVER_LICENCE_CODE_MALFORMED');
    const vendor = this.#codes.get(code);
    if (!vendor) throw new AppError('SERVER_LICENCE_CODE_UNKNOWN');
    checkRedeem(
      { kind: vendor.plan, issuedAt: vendor.issued_at, redeemedAt: vendor.redeemed_at },
      held ?? scope.licences.all(),
      now,
    );
    const uuid = randomUUID();
    const record = scope.licences.insert({
      uuid,
      code,
      kind: vendor.plan,
      seats: ARTICLES[vendor.plan].seats,
      issuedAt: vendor.issued_at,
      redeemedAt: now,
    });
    this.#codes.markRedeemed(code, scope.accountId, now);
    scope.events.record({ type: 'licence.redeemed', subject: uuid, data: { licence: uuid, kind: vendor.plan }, at: now });
    held?.push(record);
    return uuid;
  }
}

/** The account event that records an activation asked for at `now`, starting at `start`. */
function activationEvent(licence: LicenceRecord, start: number, now: number): NewAccountEvent {
  return {
    type: start > now ? 'licence.activation-scheduled' : 'licence.activation-requested',
    subject: licence.uuid,
    data: { licence: licence.uuid, kind: licence.kind, activationAt: new Date(start).toISOString() },
    at: now,
  };
}

class RollBack extends Error {}
