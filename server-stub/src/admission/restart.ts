/**
 * Seats across server restarts and crashes, as pure functions (the SQL is in store/restart.ts, the
 * transactional shell in admission/service.ts).
 *
 * When a server process starts, no device is connected to it yet, so every managed lease left in
 * the store belongs to a previous process life: open leases whose socket died with a crashed
 * process (`kill -9`, power cut, OOM kill) and leases a clean shutdown put into their grace period.
 * The server cannot vouch for any of them, but it must not hand their seats to other devices
 * either: a fleet takes minutes to reconnect after a restart (backoff with jitter, TLS handshakes,
 * admission batches), often more than the grace period. So at start every such lease is *held*:
 *
 * 1. Held leases keep their seats (they count as managed; devices waiting for a seat do not get
 *    them) until the server has **caught up** with the reconnecting fleet (`restartVerdict`).
 * 2. A held device that returns reclaims its seat and stops being held.
 * 3. Once caught up, the normal grace period starts for the held devices that have not returned,
 *    counted from that moment; then their seats are free (`graceAfterCatchUp`).
 * 4. No seat is held for good: while held, a lease's grace already ends at the hard cap plus one
 *    grace period (`holdGraceUntil`), so even a server that never runs the check frees it.
 */

export interface RestartRule {
  /** Caught up after this long without a held device returning, when no hello is waiting (s). */
  readonly quietSec: number;
  /** Caught up at the latest this long after the start (s). 0: no hold, grace runs from the start. */
  readonly holdMaxSec: number;
}

export interface RestartFacts {
  /** When this process life started holding (ms). */
  readonly startedAt: number;
  /** When a held device last returned, or null if none has yet (ms). */
  readonly lastReturnAt: number | null;
  /** Leases still held (their devices have not returned). */
  readonly heldLeft: number;
  /** Connections waiting for their hello to be decided (the admission backlog). */
  readonly backlog: number;
  readonly now: number;
}

export type CaughtUpReason = 'all-returned' | 'quiet' | 'cap';

export type RestartVerdict =
  | { readonly caughtUp: false }
  | { readonly caughtUp: true; readonly reason: CaughtUpReason };

/**
 * Whether the server has caught up with the fleet reconnecting after its start: every held device
 * is back; or `quietSec` passed without a held device returning while no hello is waiting to be
 * decided (the fleet that will come back soon has); or `holdMaxSec` passed since the start.
 */
export function restartVerdict(facts: RestartFacts, rule: RestartRule): RestartVerdict {
  if (facts.heldLeft <= 0) return { caughtUp: true, reason: 'all-returned' };
  if (facts.now - facts.startedAt >= rule.holdMaxSec * 1000) return { caughtUp: true, reason: 'cap' };
  const since = facts.lastReturnAt ?? facts.startedAt;
  if (facts.backlog === 0 && facts.now - since >= rule.quietSec * 1000) return { caughtUp: true, reason: 'quiet' };
  return { caughtUp: false };
}

/** The end of a held lease's grace while the hold lasts: the hard cap plus one grace period. */
export function holdGraceUntil(startedAt: number, rule: RestartRule, graceSec: number): number {
  return startedAt + (rule.holdMaxSec + graceSec) * 1000;
}

/** The end of a held lease's grace once the server has caught up (never later than while held). */
export function graceAfterCatchUp(caughtUpAt: number, graceSec: number, heldUntil: number): number {
  return Math.min(heldUntil, caughtUpAt + graceSec * 1000);
}
