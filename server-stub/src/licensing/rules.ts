import { AppError } from '../errors.js';
import { addMonthsUtc, DAY } from '../clock.js';
import {
  ARTICLES,
  type Feature,
  type LicenceKind,
  NOTICE_EVERY_DAYS,
  NOTICE_FIRST_DAYS,
  PLANS,
  type PlanFamily,
  STOCK_MONTHS,
  TERM_MONTHS,
} from './plans.js';

/**
 * The licensing rules as pure functions of (licences, clock). Status is never stored: it is derived
 * from the dates, so moving the clock (tests, `--test-clock`) moves every licence consistently.
 */
export interface LicenceFacts {
  readonly id: number;
  readonly uuid: string;
  readonly kind: LicenceKind;
  readonly seats: number;
  readonly issuedAt: number;
  readonly redeemedAt: number;
  readonly activationAt: number | null;
  readonly expiresAt: number | null;
}

export type LicenceStatus = 'available' | 'scheduled' | 'active' | 'expired' | 'invalidated';

/** The last moment (exclusive) a code may be redeemed or an available licence activated. */
export function stockDeadline(issuedAt: number): number {
  return addMonthsUtc(issuedAt, STOCK_MONTHS);
}

export function termEnd(activationAt: number): number {
  return addMonthsUtc(activationAt, TERM_MONTHS);
}

/**
 * A paid *plan* licence (Basic, Pro): the ones that end Free. The API licence is paid too, but it
 * is an add-on to a plan, not a plan: activating it on a Free account must not take Free's seats.
 */
function isPaidPlan(l: LicenceFacts): boolean {
  return ARTICLES[l.kind].paid && ARTICLES[l.kind].plan !== null;
}

/**
 * When a Free licence stops counting: the first moment after its redemption at which any paid plan
 * licence of the account is active ("as soon as a paid licence is activated, Free becomes invalid").
 */
export function freeInvalidatedAt(free: LicenceFacts, all: readonly LicenceFacts[]): number | null {
  if (free.kind !== 'free') return null;
  let at: number | null = null;
  for (const p of all) {
    if (!isPaidPlan(p) || p.activationAt === null || p.expiresAt === null) continue;
    if (p.expiresAt <= free.redeemedAt) continue;
    const t = Math.max(p.activationAt, free.redeemedAt);
    if (at === null || t < at) at = t;
  }
  return at;
}

export function licenceStatus(l: LicenceFacts, all: readonly LicenceFacts[], now: number): LicenceStatus {
  if (l.activationAt === null) {
    if (now >= stockDeadline(l.issuedAt)) return 'expired';
  } else if (l.expiresAt !== null && now >= l.expiresAt) {
    return 'expired';
  }
  const invalidAt = freeInvalidatedAt(l, all);
  if (invalidAt !== null && now >= invalidAt) return 'invalidated';
  if (l.activationAt === null) return 'available';
  return now < l.activationAt ? 'scheduled' : 'active';
}

export interface Entitlement {
  /** The plan in force now, or `null` when no plan licence is active (device management disabled). */
  readonly plan: PlanFamily | null;
  /** Devices that may be managed concurrently now. */
  readonly seats: number;
  readonly features: ReadonlySet<Feature>;
  readonly registrationLimit: number | null;
  /** An API licence is active (API tokens may be created and used). */
  readonly api: boolean;
}

const NO_FEATURES: ReadonlySet<Feature> = new Set();

export function entitlement(all: readonly LicenceFacts[], now: number): Entitlement {
  let paidSeats = 0;
  let paidPlan: PlanFamily | null = null;
  let freeSeats = 0;
  let api = false;
  for (const l of all) {
    if (licenceStatus(l, all, now) !== 'active') continue;
    const article = ARTICLES[l.kind];
    if (article.plan === null) api = true;
    else if (article.plan === 'free') freeSeats = Math.max(freeSeats, l.seats);
    else {
      paidSeats += l.seats;
      // Mixing is refused at redemption; should a store hold both anyway, Pro wins the features.
      if (paidPlan !== 'pro') paidPlan = article.plan;
    }
  }
  const plan: PlanFamily | null = paidPlan ?? (freeSeats > 0 ? 'free' : null);
  if (plan === null) return { plan, seats: 0, features: NO_FEATURES, registrationLimit: 0, api };
  const def = PLANS[plan];
  return {
    plan,
    seats: plan === 'free' ? freeSeats : paidSeats,
    features: def.features,
    registrationLimit: def.registrationLimit,
    api,
  };
}

/** Licences that still count for the "one plan per account" rule: neither expired nor invalidated. */
function held(all: readonly LicenceFacts[], now: number): LicenceFacts[] {
  return all.filter((l) => {
    const s = licenceStatus(l, all, now);
    return s === 'available' || s === 'scheduled' || s === 'active';
  });
}

export interface CodeFacts {
  readonly kind: LicenceKind;
  readonly issuedAt: number;
  readonly redeemedAt: number | null;
}

/** Throws the AppError that forbids redeeming `code` into an account holding `all`, if any. */
export function checkRedeem(code: CodeFacts, all: readonly LicenceFacts[], now: number): void {
  if (code.redeemedAt !== null) throw new AppError('SERVER_LICENCE_CODE_REDEEMED');
  if (now >= stockDeadline(code.issuedAt)) throw new AppError('SERVER_LICENCE_CODE_EXPIRED');
  const plan = ARTICLES[code.kind].plan;
  const current = held(all, now);
  if (plan === 'free') {
    const paidInForce = current.some((l) => isPaidPlan(l) && l.activationAt !== null);
    if (paidInForce) throw new AppError('SERVER_LICENCE_FREE_NOT_COMBINABLE');
    return;
  }
  if (plan === 'basic' || plan === 'pro') {
    const other = current.find((l) => {
      const p = ARTICLES[l.kind].plan;
      return (p === 'basic' || p === 'pro') && p !== plan;
    });
    if (other) {
      throw new AppError(
        'SERVER_LICENCE_PLAN_MIX',
        `The account holds ${ARTICLES[other.kind].plan} licences; ${plan} licences cannot be added until they expire.`,
      );
    }
  }
}

/** Validates an activation of `l` at `at` (>= now) and returns its term end. */
export function checkActivate(l: LicenceFacts, all: readonly LicenceFacts[], at: number, now: number): number {
  const status = licenceStatus(l, all, now);
  if (status === 'active' || status === 'scheduled') throw new AppError('SERVER_LICENCE_ALREADY_ACTIVATED');
  if (status !== 'available') throw new AppError('SERVER_LICENCE_NOT_ACTIVATABLE');
  if (at < now || at >= stockDeadline(l.issuedAt)) throw new AppError('SERVER_LICENCE_ACTIVATION_DATE');
  if (l.kind === 'free') {
    const paidInForce = all.some(
      (p) => isPaidPlan(p) && p.activationAt !== null && p.expiresAt !== null && p.expiresAt > at,
    );
    if (paidInForce) throw new AppError('SERVER_LICENCE_FREE_NOT_COMBINABLE');
  }
  return termEnd(at);
}

export interface LicenceEvent {
  readonly type: 'licence.activated' | 'licence.expiry-notice' | 'licence.expired' | 'licence.invalidated';
  /** Unique per account: the sweep records each event once however often it runs. */
  readonly dedupeKey: string;
  readonly at: number;
  readonly data: Record<string, unknown>;
}

/**
 * The account events a licence has due at `now`. Expiry notices: 30 days before expiry, then weekly;
 * when the clock jumps over several, only the latest is due (one notice, not a burst of stale ones).
 */
export function dueLicenceEvents(l: LicenceFacts, all: readonly LicenceFacts[], now: number): LicenceEvent[] {
  const out: LicenceEvent[] = [];
  const base = { licence: l.uuid, kind: l.kind };
  if (l.activationAt !== null && now >= l.activationAt) {
    out.push({ type: 'licence.activated', dedupeKey: `${l.uuid}:activated`, at: l.activationAt, data: base });
  }
  const invalidAt = freeInvalidatedAt(l, all);
  const expired = l.expiresAt !== null && now >= l.expiresAt;
  if (invalidAt !== null && now >= invalidAt && !(l.expiresAt !== null && l.expiresAt <= invalidAt)) {
    out.push({ type: 'licence.invalidated', dedupeKey: `${l.uuid}:invalidated`, at: invalidAt, data: base });
    return out;
  }
  if (l.expiresAt === null) return out;
  if (expired) {
    out.push({ type: 'licence.expired', dedupeKey: `${l.uuid}:expired`, at: l.expiresAt, data: base });
    return out;
  }
  const first = l.expiresAt - NOTICE_FIRST_DAYS * DAY;
  if (now < first) return out;
  const seq = Math.floor((now - first) / (NOTICE_EVERY_DAYS * DAY));
  const at = first + seq * NOTICE_EVERY_DAYS * DAY;
  out.push({
    type: 'licence.expiry-notice',
    dedupeKey: `${l.uuid}:notice:${seq}`,
    at,
    data: { ...base, expiresAt: new Date(l.expiresAt).toISOString(), daysLeft: Math.ceil((l.expiresAt - now) / DAY) },
  });
  return out;
}
