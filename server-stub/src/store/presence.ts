import type { Store } from './database.js';

/**
 * Writes device presence (online, connected at, last seen) by device row id, across accounts: the
 * admission's presence tracker flushes its batch through this, in one transaction of its own.
 */
export class PresenceStore {
  readonly #update;

  constructor(store: Store) {
    this.#update = store.stmt('UPDATE devices SET online = ?, connected_at = ?, last_seen_at = ? WHERE id = ?');
  }

  set(deviceId: number, p: { online: boolean; connectedAt: number; lastSeenAt: number }): void {
    this.#update.run(p.online ? 1 : 0, p.connectedAt, p.lastSeenAt, deviceId);
  }
}
