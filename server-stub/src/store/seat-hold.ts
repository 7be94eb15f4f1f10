import type { CaughtUpReason } from '../admission/seat-hold.js';
import { dialects, type Store } from './database.js';
import { chunks } from './events.js';
import { markLeasesEnded } from './leases.js';

/**
 * The seat hold (one row; see admission/seat-hold.ts). The table and the leases' column keep the
 * name `restart_hold` from when a restart was the only outage that started one.
 */
export interface HoldRow {
  readonly startedAt: number;
  /** When the hold last took leases of a lost broker's devices (null: only at its start). */
  readonly lastLossAt: number | null;
  readonly heldAtStart: number;
  /** Since when devices can reach the server, or null while a lost broker is not back. */
  readonly servingSince: number | null;
  readonly lastReturnAt: number | null;
  readonly endedAt: number | null;
  readonly endReason: CaughtUpReason | null;
}

interface Row {
  started_at: number;
  last_loss_at: number | null;
  held_at_start: number;
  serving_since: number | null;
  last_return_at: number | null;
  ended_at: number | null;
  end_reason: CaughtUpReason | null;
}

/**
 * Starts a process life (must run in a write transaction, before any device is served): every
 * managed lease left in the store is held until `graceUntil`; unmanaged leases (connected devices
 * beyond the limit, which hold no seat) end; no device is online. Returns the leases held.
 *
 * Every managed lease still in the store counts: the sweep deletes leases whose grace ended every
 * `sweepIntervalSec`, so what remains are seats that were held when the previous life ended (open
 * ones whose socket died with it, and ones a clean shutdown put into their grace period).
 */
export function startRestartHold(store: Store, now: number, graceUntil: number): number {
  const ended = store
    .stmt<{ device_id: number }>('DELETE FROM leases WHERE state = \'unmanaged\' RETURNING device_id')
    .all()
    .map((r) => r.device_id);
  markLeasesEnded(store, ended, now);
  const held = store
    .stmt(
      `UPDATE leases SET released_at = COALESCE(released_at, ?), grace_until = ?, restart_hold = 1
       WHERE state = 'managed'`,
    )
    .run(now, graceUntil).changes;
  store.stmt('UPDATE devices SET online = 0 WHERE online = 1').run();
  // Outages of the previous life's processes ended with them.
  store.stmt('DELETE FROM hold_outages').run();
  store
    .stmt(
      `INSERT INTO restart_hold (id, started_at, last_loss_at, held_at_start, serving_since, last_return_at, ended_at, end_reason)
       VALUES (1, ?, NULL, ?, ?, NULL, NULL, NULL)
       ON CONFLICT (id) DO UPDATE SET started_at = excluded.started_at, last_loss_at = NULL, held_at_start = excluded.held_at_start,
         serving_since = excluded.serving_since, last_return_at = NULL, ended_at = NULL, end_reason = NULL`,
    )
    .run(now, held, now);
  return held;
}

/**
 * A process of the server lost its way to devices at `now` (its bucket clients lost the MQTT
 * broker): recorded under `owner` (the process's buckets) until `outageOver`, and a running hold
 * stops counting its quiet period. Several processes may be out at once; devices can reach the
 * server again only when none is.
 */
export function outageBegan(store: Store, owner: string, now: number): void {
  store.stmt('INSERT INTO hold_outages (owner, since) VALUES (?, ?) ON CONFLICT (owner) DO NOTHING').run(owner, now);
  store.stmt('UPDATE restart_hold SET serving_since = NULL WHERE id = 1 AND ended_at IS NULL').run();
}

/**
 * The process `owner` has its way to devices back at `now` (every bucket client subscribed, or a
 * replacement process has subscribed the buckets of one that died while out). When it was the
 * last process out, the running hold's quiet period counts from `now`. Returns whether `owner`
 * was out.
 */
export function outageOver(store: Store, owner: string, now: number): boolean {
  const was = store.stmt('DELETE FROM hold_outages WHERE owner = ?').run(owner).changes > 0;
  if (was && outagesLeft(store) === 0) {
    store.stmt('UPDATE restart_hold SET serving_since = ? WHERE id = 1 AND ended_at IS NULL AND serving_since IS NULL').run(now);
  }
  return was;
}

function outagesLeft(store: Store): number {
  return store.stmt<{ n: number }>('SELECT COUNT(*) AS n FROM hold_outages').get()?.n ?? 0;
}

/**
 * The server lost its way to devices at `now` (a bucket client lost the MQTT broker) and is about
 * to hold `count` of their leases (must run in a write transaction): starts a hold when none runs,
 * or adds them to the running one, whose hard cap then counts from `now` (a loss late in a hold
 * gets the whole cap too). A new hold serves from `now` only when no process is out
 * (`outageBegan`), which is when a release was retried after the broker came back.
 */
export function joinHold(store: Store, now: number, count: number): void {
  const running = currentHold(store);
  if (running && running.endedAt === null) {
    store.stmt('UPDATE restart_hold SET held_at_start = held_at_start + ?, last_loss_at = ? WHERE id = 1').run(count, now);
    return;
  }
  const serving = outagesLeft(store) === 0 ? now : null;
  store
    .stmt(
      `INSERT INTO restart_hold (id, started_at, last_loss_at, held_at_start, serving_since, last_return_at, ended_at, end_reason)
       VALUES (1, ?, NULL, ?, ?, NULL, NULL, NULL)
       ON CONFLICT (id) DO UPDATE SET started_at = excluded.started_at, last_loss_at = NULL, held_at_start = excluded.held_at_start,
         serving_since = excluded.serving_since, last_return_at = NULL, ended_at = NULL, end_reason = NULL`,
    )
    .run(now, count, serving);
}

/**
 * Holds the managed leases of `deviceIds` until `graceUntil` at the latest: open ones are released
 * at `at`, ones already released (in their grace period) keep their release time.
 */
export function holdLeases(store: Store, deviceIds: readonly number[], at: number, graceUntil: number): void {
  if (store.dialect !== 'postgres') {
    const hold = store.stmt('UPDATE leases SET released_at = COALESCE(released_at, ?), grace_until = ?, restart_hold = 1 WHERE device_id = ?');
    for (const id of deviceIds) hold.run(at, graceUntil, id);
    return;
  }
  // One statement per BULK_CHUNK_ROWS devices, not a round trip each.
  const hold = store.stmt(
    'UPDATE leases SET released_at = COALESCE(released_at, ?), grace_until = ?, restart_hold = 1 WHERE device_id = ANY(?::bigint[])',
  );
  for (const chunk of chunks(deviceIds)) hold.run(at, graceUntil, chunk);
}

export function currentHold(store: Store): HoldRow | undefined {
  const r = store.stmt<Row>('SELECT * FROM restart_hold WHERE id = 1').get();
  return (
    r && {
      startedAt: r.started_at,
      lastLossAt: r.last_loss_at,
      heldAtStart: r.held_at_start,
      servingSince: r.serving_since,
      lastReturnAt: r.last_return_at,
      endedAt: r.ended_at,
      endReason: r.end_reason,
    }
  );
}

/** Leases still held (their devices have not come back since the hold took them). */
export function heldLeaseCount(store: Store): number {
  return store.stmt<{ n: number }>('SELECT COUNT(*) AS n FROM leases WHERE restart_hold IS NOT NULL').get()?.n ?? 0;
}

/**
 * The devices can reach the server from `at` on (cluster workers forked and listening after a
 * start): the quiet period of a running hold counts from then, unless a process is out
 * (`outageBegan`); then it counts from when the last one is back.
 */
export function holdServing(store: Store, at: number): void {
  if (outagesLeft(store) > 0) return;
  store.stmt('UPDATE restart_hold SET serving_since = ? WHERE id = 1 AND ended_at IS NULL').run(at);
}

/** A held device came back at `at` (its lease was reclaimed in the same transaction). */
export function recordHeldReturn(store: Store, at: number): void {
  store
    .stmt(
      dialects({
        sqlite: 'UPDATE restart_hold SET last_return_at = MAX(COALESCE(last_return_at, 0), ?) WHERE id = 1',
        postgres: 'UPDATE restart_hold SET last_return_at = GREATEST(COALESCE(last_return_at, 0), ?) WHERE id = 1',
      }),
    )
    .run(at);
}

/**
 * The server caught up at `at`: the leases still held keep their seats until `graceUntil` (never
 * later than while held) and are ordinary grace leases from then on. Returns how many there were.
 */
export function endHold(store: Store, at: number, reason: CaughtUpReason, graceUntil: number): number {
  const n = store
    .stmt(
      dialects({
        sqlite: 'UPDATE leases SET grace_until = MIN(grace_until, ?), restart_hold = NULL WHERE restart_hold IS NOT NULL',
        // LEAST skips a NULL where SQLite's MIN returns it: keep a NULL grace_until NULL.
        postgres: 'UPDATE leases SET grace_until = CASE WHEN grace_until IS NULL THEN NULL ELSE LEAST(grace_until, ?) END, restart_hold = NULL WHERE restart_hold IS NOT NULL',
      }),
    )
    .run(graceUntil).changes;
  store.stmt('UPDATE restart_hold SET ended_at = ?, end_reason = ? WHERE id = 1').run(at, reason);
  return n;
}
