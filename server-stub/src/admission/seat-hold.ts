/**
 * Seats across the server's own outages, as pure functions (the SQL is in store/seat-hold.ts, the
 * transactional shell in admission/service.ts).
 *
 * Two outages are the server's doing, not the devices':
 *
 * - **A restart or crash of the server.** When a server process starts, no device is connected to
 *   it yet, so every managed lease left in the store belongs to a previous process life: open
 *   leases whose socket died with a crashed process (`kill -9`, power cut, OOM kill) and leases a
 *   clean shutdown put into their grace period. The server cannot vouch for any of them.
 * - **The loss of the MQTT broker** by a bucket client of the server (the broker restarted, or the
 *   network between them failed): every link of the bucket ends at once although its device did
 *   nothing, and the devices can only come back once the broker is back.
 *
 * Either way the server must not hand the seats of the devices it lost to other devices: a fleet
 * takes minutes to reconnect (backoff with jitter, TLS handshakes, admission batches), often more
 * than the grace period. So every such lease is *held*, and one **seat hold** runs for all of them
 * (one hold at a time: an outage during a running hold adds its leases to it, and the hard cap
 * then counts from that outage):
 *
 * 1. Held leases keep their seats (they count as managed; devices waiting for a seat do not get
 *    them) until the server has **caught up** with the reconnecting fleet (`holdVerdict`).
 * 2. A held device that returns reclaims its seat and stops being held.
 * 3. Once caught up, the normal grace period starts for the held devices that have not returned,
 *    counted from that moment; then their seats are free (`graceAfterCatchUp`).
 * 4. No seat is held for good: while held, a lease's grace already ends at the hard cap plus one
 *    grace period (`holdGraceUntil`), so even a server that never runs the check frees it.
 *
 * The quiet period counts only while the devices can reach the server (`servingSince`): from when
 * every cluster worker listens after a start, and from when every process that lost the broker
 * has it back; a broker down for longer than the quiet period must not end the hold while no
 * device can return, nor may one process's return end it while another's devices cannot return.
 */

export interface HoldRule {
  /** Caught up after this long without a held device returning, when no hello is waiting (s). */
  readonly quietSec: number;
  /** Caught up at the latest this long after the hold started (s). 0: no hold, grace runs at once. */
  readonly holdMaxSec: number;
}

export interface HoldFacts {
  /**
   * Where the hard cap counts from (ms): the process start or the lost broker link that started
   * the hold, or the latest lost link that added leases to it.
   */
  readonly startedAt: number;
  /** Since when the devices can reach the server again (ms), or null while they cannot (the broker is still lost). */
  readonly servingSince: number | null;
  /** When a held device last returned, or null if none has yet (ms). */
  readonly lastReturnAt: number | null;
  /** Leases still held (their devices have not returned). */
  readonly heldLeft: number;
  /** Connections waiting for their hello to be decided (the admission backlog). */
  readonly backlog: number;
  readonly now: number;
}

export type CaughtUpReason = 'all-returned' | 'quiet' | 'cap';

export type HoldVerdict =
  | { readonly caughtUp: false }
  | { readonly caughtUp: true; readonly reason: CaughtUpReason };

/**
 * Whether the server has caught up with the fleet reconnecting after its outage: every held device
 * is back; or, while the devices can reach the server, `quietSec` passed without a held device
 * returning (counted from the later of the last return and the start of service) while no hello is
 * waiting to be decided (the fleet that will come back soon has); or `holdMaxSec` passed since the
 * hold started, reachable or not.
 */
export function holdVerdict(facts: HoldFacts, rule: HoldRule): HoldVerdict {
  if (facts.heldLeft <= 0) return { caughtUp: true, reason: 'all-returned' };
  if (facts.now - facts.startedAt >= rule.holdMaxSec * 1000) return { caughtUp: true, reason: 'cap' };
  if (facts.servingSince === null) return { caughtUp: false };
  const since = Math.max(facts.servingSince, facts.lastReturnAt ?? facts.servingSince);
  if (facts.backlog === 0 && facts.now - since >= rule.quietSec * 1000) return { caughtUp: true, reason: 'quiet' };
  return { caughtUp: false };
}

/** The end of a held lease's grace while the hold lasts: the hard cap plus one grace period. */
export function holdGraceUntil(startedAt: number, rule: HoldRule, graceSec: number): number {
  return startedAt + (rule.holdMaxSec + graceSec) * 1000;
}

/** The end of a held lease's grace once the server has caught up (never later than while held). */
export function graceAfterCatchUp(caughtUpAt: number, graceSec: number, heldUntil: number): number {
  return Math.min(heldUntil, caughtUpAt + graceSec * 1000);
}
