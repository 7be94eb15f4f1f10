/**
 * Floating admission as pure functions of (seats from the licences, leases, clock). The service
 * (`service.ts`) loads the inputs and applies the result inside one `BEGIN IMMEDIATE` transaction,
 * so the outcome is globally first-come-first-served even across processes sharing the store.
 *
 * A lease is one device's claim on a seat of its account:
 * - `managed`: the device holds a seat. While connected `releasedAt` is null; after a disconnect it
 *   keeps the seat until `graceUntil` so the same device can reclaim it.
 * - `unmanaged`: the device is connected but beyond the limit (licences dropped while it was
 *   online). It has no seat, gets no jobs, and waits in line for one.
 * The line is ordered by `leasedAt`, the moment the device's continuous lease began (a reclaim
 * within the grace period keeps its place).
 */
export type LeaseState = 'managed' | 'unmanaged';

export interface LeaseFacts {
  readonly deviceId: number;
  readonly state: LeaseState;
  readonly leasedAt: number;
  readonly releasedAt: number | null;
  readonly graceUntil: number | null;
  /** Held across the server's own outage (a restart, a lost MQTT broker) until it caught up with the fleet (admission/seat-hold.ts). */
  readonly held?: boolean;
  /** The server process that admitted the device (several hosts on one store); null or absent with one process. */
  readonly instanceId?: string | null;
}

export interface RebalanceResult {
  /** Leases that end: grace over, or disconnected and beyond the limit. */
  readonly drop: number[];
  /** Connected devices that get a seat (earliest in line first). */
  readonly toManaged: number[];
  /** Connected devices that lose their seat (those that connected most recently first). */
  readonly toUnmanaged: number[];
}

function inGraceExpired(l: LeaseFacts, now: number): boolean {
  return l.releasedAt !== null && (l.graceUntil === null || l.graceUntil <= now);
}

function byLine(a: LeaseFacts, b: LeaseFacts): number {
  return a.leasedAt - b.leasedAt || a.deviceId - b.deviceId;
}

/**
 * Gives the first `seats` leases in line a seat and takes it from the rest: devices that connected
 * most recently beyond the limit become unmanaged; disconnected ones beyond it lose their lease.
 */
export function rebalance(seats: number, leases: readonly LeaseFacts[], now: number): RebalanceResult {
  const drop: number[] = [];
  const live: LeaseFacts[] = [];
  for (const l of leases) {
    if (inGraceExpired(l, now) || (l.releasedAt !== null && l.state === 'unmanaged')) drop.push(l.deviceId);
    else live.push(l);
  }
  live.sort(byLine);
  const toManaged: number[] = [];
  const toUnmanaged: number[] = [];
  live.forEach((l, position) => {
    if (position < seats) {
      if (l.state === 'unmanaged') toManaged.push(l.deviceId);
    } else if (l.releasedAt !== null) {
      drop.push(l.deviceId);
    } else if (l.state === 'managed') {
      toUnmanaged.push(l.deviceId);
    }
  });
  // Most recently connected first, as the reference describes who goes without.
  toUnmanaged.reverse();
  return { drop, toManaged, toUnmanaged };
}

/** Whether the cheap summary shows the line is out of balance (full `rebalance` needed). */
export function needsRebalance(seats: number, managedCount: number, unmanagedWaiting: boolean): boolean {
  return managedCount > seats || (managedCount < seats && unmanagedWaiting);
}

export type RejectReason = 'no-free-licence' | 'no-active-licence';

export type AdmitDecision =
  | { readonly outcome: 'managed'; readonly lease: 'new' | 'reclaimed' | 'kept' }
  | { readonly outcome: 'unmanaged' }
  | { readonly outcome: 'rejected'; readonly reason: RejectReason; readonly retryAfterSec: number };

export interface AdmitInput {
  /** Seats of the account now (from its active licences). */
  readonly seats: number;
  /** Managed leases of the account, the device's own included, after expired graces are dropped. */
  readonly managedCount: number;
  /** The device's own lease, if any (after expired graces are dropped). */
  readonly own: LeaseFacts | undefined;
  /** The earliest end of a grace period among the account's leases, if any. */
  readonly nextGraceEnd: number | null;
  readonly now: number;
  /** Retry-after when no lease is known to end sooner. */
  readonly defaultRetryAfterSec: number;
}

/** Decides one device's hello, given a balanced line (see `rebalance`). */
export function decideAdmission(input: AdmitInput): AdmitDecision {
  const { own, seats, managedCount, now } = input;
  if (own?.state === 'managed') {
    return { outcome: 'managed', lease: own.releasedAt === null ? 'kept' : 'reclaimed' };
  }
  if (own?.state === 'unmanaged') return { outcome: 'unmanaged' };
  if (managedCount < seats) return { outcome: 'managed', lease: 'new' };
  if (seats === 0) {
    return { outcome: 'rejected', reason: 'no-active-licence', retryAfterSec: input.defaultRetryAfterSec };
  }
  const retryAfterSec =
    input.nextGraceEnd !== null && input.nextGraceEnd > now
      ? Math.min(input.defaultRetryAfterSec, Math.max(1, Math.ceil((input.nextGraceEnd - now) / 1000)))
      : input.defaultRetryAfterSec;
  return { outcome: 'rejected', reason: 'no-free-licence', retryAfterSec };
}
