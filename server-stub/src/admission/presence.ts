import type { Store } from '../store/database.js';
import { PresenceStore } from '../store/presence.js';

/**
 * Device presence (online, connected at, last seen) is held in memory and written in batches: a
 * connected device touches "last seen" on every message, and 30,000 devices must not mean 30,000
 * writes a second. Memory per connected device: one small entry (three numbers) in one Map.
 */
interface Entry {
  online: boolean;
  connectedAt: number;
  lastSeenAt: number;
}

export class PresenceTracker {
  readonly #entries = new Map<number, Entry>();
  readonly #dirty = new Set<number>();

  readonly #presence: PresenceStore;

  constructor(private readonly store: Store) {
    this.#presence = new PresenceStore(store);
  }

  connected(deviceId: number, at: number): void {
    this.#entries.set(deviceId, { online: true, connectedAt: at, lastSeenAt: at });
    this.#dirty.add(deviceId);
  }

  seen(deviceId: number, at: number): void {
    const e = this.#entries.get(deviceId);
    if (!e) return;
    e.lastSeenAt = at;
    this.#dirty.add(deviceId);
  }

  disconnected(deviceId: number, at: number): void {
    const e = this.#entries.get(deviceId);
    if (e) {
      e.online = false;
      e.lastSeenAt = at;
    } else {
      this.#entries.set(deviceId, { online: false, connectedAt: at, lastSeenAt: at });
    }
    this.#dirty.add(deviceId);
  }

  isOnline(deviceId: number): boolean {
    return this.#entries.get(deviceId)?.online === true;
  }

  get onlineCount(): number {
    let n = 0;
    for (const e of this.#entries.values()) if (e.online) n++;
    return n;
  }

  get pending(): number {
    return this.#dirty.size;
  }

  /** Writes every change since the last flush in one transaction (set-based); forgets offline devices. */
  flush(): number {
    if (this.#dirty.size === 0) return 0;
    const ids = [...this.#dirty];
    this.#dirty.clear();
    const rows = ids.flatMap((id) => {
      const e = this.#entries.get(id);
      return e ? [{ id, online: e.online, connectedAt: e.connectedAt, lastSeenAt: e.lastSeenAt }] : [];
    });
    this.store.write(() => this.#presence.setMany(rows));
    for (const id of ids) {
      const e = this.#entries.get(id);
      if (e && !e.online) this.#entries.delete(id);
    }
    return ids.length;
  }
}
