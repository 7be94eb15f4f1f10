import type { Store } from './database.js';

/**
 * The latest hello summary and status per device. Devices send status on connect, on change and
 * periodically; the channel coalesces them in memory (the latest per device wins) and writes them
 * here in one transaction per flush, like presence.
 */
export class DeviceStatusBuffer {
  readonly #hello = new Map<number, { json: string; at: number }>();
  readonly #status = new Map<number, { json: string; firmware: string; at: number }>();

  constructor(private readonly store: Store) {}

  hello(deviceKey: number, summary: object, at: number): void {
    this.#hello.set(deviceKey, { json: JSON.stringify(summary), at });
  }

  status(deviceKey: number, status: { firmwareVersion: string }, at: number): void {
    this.#status.set(deviceKey, { json: JSON.stringify(status), firmware: status.firmwareVersion, at });
  }

  get pending(): number {
    return this.#hello.size + this.#status.size;
  }

  /** Writes everything buffered in one transaction; returns the number of rows written. */
  flush(): number {
    if (this.pending === 0) return 0;
    const hellos = [...this.#hello];
    const statuses = [...this.#status];
    this.#hello.clear();
    this.#status.clear();
    const upHello = this.store.stmt(
      `INSERT INTO device_status (device_id, hello, hello_at) VALUES (?, ?, ?)
       ON CONFLICT (device_id) DO UPDATE SET hello = excluded.hello, hello_at = excluded.hello_at`,
    );
    const upStatus = this.store.stmt(
      `INSERT INTO device_status (device_id, status, status_at) VALUES (?, ?, ?)
       ON CONFLICT (device_id) DO UPDATE SET status = excluded.status, status_at = excluded.status_at`,
    );
    // The reported firmware is the truth the inventory filters on.
    const firmware = this.store.stmt('UPDATE devices SET firmware = ? WHERE id = ?');
    const exists = this.store.stmt('SELECT 1 FROM devices WHERE id = ?');
    this.store.write(() => {
      // A device deleted while connected: skip (the foreign key would refuse the row).
      for (const [id, h] of hellos) if (exists.get(id)) upHello.run(id, h.json, h.at);
      for (const [id, s] of statuses) {
        if (!exists.get(id)) continue;
        upStatus.run(id, s.json, s.at);
        firmware.run(s.firmware, id);
      }
    });
    return hellos.length + statuses.length;
  }
}

export interface DeviceStatusRow {
  hello: string | null;
  hello_at: number | null;
  status: string | null;
  status_at: number | null;
}

export function readDeviceStatus(store: Store, deviceId: number): DeviceStatusRow | undefined {
  return store
    .stmt<DeviceStatusRow>('SELECT hello, hello_at, status, status_at FROM device_status WHERE device_id = ?')
    .get(deviceId);
}
