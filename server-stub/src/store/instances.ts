import { dialects, type Sql, type Store } from './database.js';

/**
 * The server processes sharing one store (independent hosts on PostgreSQL): one row per process
 * life, a heartbeat, and the lease of each cluster-wide background role (see hosts/membership.ts).
 * Times here are the database server's clock, never a host's: hosts whose clocks disagree still
 * agree on who is late.
 */

/**
 * The first key of the session-level advisory lock every live process holds on its store
 * connection (the second is the row's `lock_key`): PostgreSQL drops it the moment that connection
 * ends, so a process that crashed is seen dead at once, not only once its heartbeat is late.
 * ('flhi' in ASCII.)
 */
export const INSTANCE_LOCK_CLASS = 0x666c6869;

/** The database's clock in milliseconds. */
const NOW_MS = dialects({
  sqlite: 'SELECT CAST((julianday(\'now\') - 2440587.5) * 86400000 AS INTEGER) AS now',
  postgres: 'SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT AS now',
});

/**
 * Takes this process's liveness lock on its store connection (PostgreSQL; held until the
 * connection ends). SQLite has no such thing: there, only the heartbeat tells.
 */
export function holdLivenessLock(store: Store, lockKey: number): void {
  if (store.dialect === 'postgres') store.stmt('SELECT pg_advisory_lock(?, ?)').get(INSTANCE_LOCK_CLASS, lockKey);
}

/**
 * Takes the liveness lock again if this process's store connection no longer holds it (the
 * connection was lost and a new one made); true when it had to. SQLite: always false.
 */
export function renewLivenessLock(store: Store, lockKey: number): boolean {
  if (store.dialect !== 'postgres') return false;
  const held = store
    .stmt<{ held: number }>(
      `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()
         AND classid = ${INSTANCE_LOCK_CLASS}::oid AND objid = ?::oid AND objsubid = 2) AS held`,
    )
    .get(lockKey)!.held;
  if (held) return false;
  holdLivenessLock(store, lockKey);
  return true;
}

export function storeNow(store: Store): number {
  return store.stmt<{ now: number }>(NOW_MS).get()!.now;
}

export interface InstanceRow {
  readonly id: string;
  readonly lockKey: number;
  readonly label: string;
  readonly startedAt: number;
  readonly heartbeatAt: number;
}

/**
 * The rule for a dead instance, over the instances `candidates` picks (a condition on `i.id` with
 * one `?`): not stopped, and its heartbeat older than the second `?`, or (PostgreSQL) its liveness
 * lock held by nobody.
 */
const deadWhere = (candidates: string) =>
  dialects({
    sqlite: `SELECT i.id, i.heartbeat_at, 1 AS connected FROM server_instances i
             WHERE i.stopped_at IS NULL AND ${candidates} AND i.heartbeat_at < ? ORDER BY i.started_at`,
    postgres: `SELECT id, heartbeat_at, connected FROM (
                 SELECT i.id, i.heartbeat_at, i.started_at, EXISTS (
                   SELECT 1 FROM pg_locks l
                   WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                     AND l.classid = ${INSTANCE_LOCK_CLASS}::oid AND l.objid = i.lock_key::oid
                     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())) AS connected
                 FROM server_instances i WHERE i.stopped_at IS NULL AND ${candidates}) x
               WHERE x.heartbeat_at < ? OR NOT x.connected
               ORDER BY x.started_at`,
  });
/** Every instance but the caller's own. */
const DEAD_OTHERS = deadWhere('i.id <> ?');
/** One instance. */
const DEAD_ONE = deadWhere('i.id = ?');

export class ServerInstances {
  constructor(private readonly store: Store) {}

  register(id: string, lockKey: number, label: string, now: number): void {
    this.store
      .stmt(
        `INSERT INTO server_instances (id, lock_key, label, started_at, heartbeat_at, stopped_at) VALUES (?, ?, ?, ?, ?, NULL)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, stopped_at = NULL`,
      )
      .run(id, lockKey, label, now, now);
  }

  /** Records a heartbeat; false when another process declared this one dead (its row is stopped). */
  heartbeat(id: string, now: number): boolean {
    return this.store.stmt('UPDATE server_instances SET heartbeat_at = ? WHERE id = ? AND stopped_at IS NULL').run(now, id).changes > 0;
  }

  /**
   * Instances other than `self` not stopped whose heartbeat is older than `lateBefore`, or (on
   * PostgreSQL) whose store connection is gone: nobody holds their advisory lock any more. Each
   * with its last heartbeat and whether its connection still holds its lock (for the log).
   */
  dead(self: string, lateBefore: number): Array<{ id: string; heartbeatAt: number; connected: boolean }> {
    return this.#dead(DEAD_OTHERS, self, lateBefore);
  }

  /** Whether instance `id` is dead by the same rule as `dead` (one row read, not all of them). */
  isDead(id: string, lateBefore: number): boolean {
    return this.#dead(DEAD_ONE, id, lateBefore).length > 0;
  }

  #dead(sql: Sql, id: string, lateBefore: number): Array<{ id: string; heartbeatAt: number; connected: boolean }> {
    return this.store
      .stmt<{ id: string; heartbeat_at: number; connected: number }>(sql)
      .all(id, lateBefore)
      .map((r) => ({ id: r.id, heartbeatAt: r.heartbeat_at, connected: r.connected === 1 }));
  }

  /** Other instances that are not stopped (alive or not yet found dead). */
  othersRunning(self: string): number {
    return this.store.stmt<{ n: number }>('SELECT COUNT(*) AS n FROM server_instances WHERE stopped_at IS NULL AND id <> ?').get(self)?.n ?? 0;
  }

  /** Marks an instance stopped; true for the one caller that did it (others find it stopped already). */
  stop(id: string, at: number): boolean {
    return this.store.stmt('UPDATE server_instances SET stopped_at = ? WHERE id = ? AND stopped_at IS NULL').run(at, id).changes > 0;
  }

  /** Marks every other instance stopped (a cold start of the whole cluster: their leases are held instead). */
  stopAllBut(self: string, at: number): number {
    return this.store.stmt('UPDATE server_instances SET stopped_at = ? WHERE stopped_at IS NULL AND id <> ?').run(at, self).changes;
  }

  /** Forgets instances stopped before `before` (the table stays small). */
  purgeStopped(before: number): number {
    return this.store.stmt('DELETE FROM server_instances WHERE stopped_at IS NOT NULL AND stopped_at < ?').run(before).changes;
  }

  live(): InstanceRow[] {
    return this.store
      .stmt<{ id: string; lock_key: number; label: string; started_at: number; heartbeat_at: number }>(
        'SELECT id, lock_key, label, started_at, heartbeat_at FROM server_instances WHERE stopped_at IS NULL ORDER BY started_at',
      )
      .all()
      .map((r) => ({ id: r.id, lockKey: r.lock_key, label: r.label, startedAt: r.started_at, heartbeatAt: r.heartbeat_at }));
  }

  /**
   * Takes or renews the role `name` for `holder` until `expiresAt`: it is taken when free, expired
   * (`expires_at <= now`), or held by an instance that is stopped (found dead). Returns the holder
   * after the attempt.
   */
  claimRole(name: string, holder: string, now: number, expiresAt: number): string {
    this.store
      .stmt(
        `INSERT INTO server_roles (name, holder, expires_at) VALUES (?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE server_roles.holder = excluded.holder OR server_roles.expires_at <= ?
           OR NOT EXISTS (SELECT 1 FROM server_instances i WHERE i.id = server_roles.holder AND i.stopped_at IS NULL)`,
      )
      .run(name, holder, expiresAt, now);
    return this.store.stmt<{ holder: string }>('SELECT holder FROM server_roles WHERE name = ?').get(name)!.holder;
  }

  /** Gives the role up (a clean stop): another instance takes it at its next heartbeat. */
  releaseRole(name: string, holder: string): void {
    this.store.stmt('DELETE FROM server_roles WHERE name = ? AND holder = ?').run(name, holder);
  }

  /** What a process recorded about itself (host name, pid, port), for messages. */
  label(id: string): string | undefined {
    return this.store.stmt<{ label: string }>('SELECT label FROM server_instances WHERE id = ?').get(id)?.label;
  }

  roleHolder(name: string): string | undefined {
    return this.store.stmt<{ holder: string }>('SELECT holder FROM server_roles WHERE name = ?').get(name)?.holder;
  }

  /** Devices whose lease `instanceId` holds and has not released (open managed leases, and unmanaged ones). */
  heldDevices(instanceId: string): Array<{ deviceId: number; accountId: number }> {
    return this.store
      .stmt<{ device_id: number; account_id: number }>(
        `SELECT device_id, account_id FROM leases
         WHERE instance_id = ? AND (state = 'unmanaged' OR (released_at IS NULL AND restart_hold IS NULL))`,
      )
      .all(instanceId)
      .map((r) => ({ deviceId: r.device_id, accountId: r.account_id }));
  }
}
