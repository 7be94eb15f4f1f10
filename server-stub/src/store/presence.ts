import type { Store } from './database.js';
import { chunks } from './events.js';

/** What the presence tracker writes of one device. */
export interface PresenceRow {
  readonly id: number;
  readonly online: boolean;
  readonly connectedAt: number;
  readonly lastSeenAt: number;
}

/**
 * Writes device presence (online, connected at, last seen) by device row id, across accounts: the
 * admission's presence tracker flushes its batch through this, in one transaction of its own.
 */
export class PresenceStore {
  constructor(private readonly store: Store) {}

  /**
   * One statement per 1,000 devices on PostgreSQL (each statement is a round trip there, and a
   * flush holds every device heard since the last one); the prepared one per device on SQLite.
   */
  setMany(rows: readonly PresenceRow[]): void {
    if (rows.length === 0) return;
    if (this.store.dialect !== 'postgres') {
      const up = this.store.stmt('UPDATE devices SET online = ?, connected_at = ?, last_seen_at = ? WHERE id = ?');
      for (const r of rows) up.run(r.online ? 1 : 0, r.connectedAt, r.lastSeenAt, r.id);
      return;
    }
    const up = this.store.stmt(
      `UPDATE devices d SET online = u.online, connected_at = u.connected_at, last_seen_at = u.last_seen_at
       FROM unnest(?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[]) AS u(id, online, connected_at, last_seen_at)
       WHERE d.id = u.id`,
    );
    for (const c of chunks(rows)) {
      up.run(c.map((r) => r.id), c.map((r) => (r.online ? 1 : 0)), c.map((r) => r.connectedAt), c.map((r) => r.lastSeenAt));
    }
  }
}
