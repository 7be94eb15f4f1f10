import type { Store } from './database.js';

/** A reported position is stored again only when the router moved farther than this (metres). */
export const POSITION_MIN_MOVE_M = 25;

/** Great-circle distance in metres (haversine, mean Earth radius). */
export function distanceM(a: { lat: number; lon: number }, b: { lat: number; lon: number }): number {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6_371_000 * Math.asin(Math.min(1, Math.sqrt(h)));
}

interface Reported {
  model?: string;
  firmware?: string;
  anchors?: string;
  position?: { lat: number; lon: number };
}

interface StatusInput {
  firmwareVersion: string;
  trustAnchorsDigest?: string;
  location?: { lat: number; lon: number };
}

/**
 * The latest hello summary and status per device. Devices send status on connect, on change and
 * periodically; the channel coalesces them in memory (the latest per device wins) and writes them
 * here in one transaction per flush, like presence.
 *
 * What the router reports about itself (model, firmware, trust-anchor digest, position) goes into
 * the device's `reported_*` columns, beside what was typed in. A column is written only when its
 * value changed, and a position only when the router moved more than POSITION_MIN_MOVE_M: a router
 * with GNSS reports a slightly different fix in every status, which would otherwise rewrite its
 * device row every status period.
 */
export class DeviceStatusBuffer {
  readonly #hello = new Map<number, { json: string; at: number }>();
  readonly #status = new Map<number, { json: string; firmware: string; at: number }>();
  readonly #reported = new Map<number, Reported & { at: number }>();

  constructor(private readonly store: Store) {}

  hello(deviceKey: number, summary: { model: string; firmwareVersion: string; [more: string]: unknown }, at: number, anchorsDigest?: string): void {
    this.#hello.set(deviceKey, { json: JSON.stringify(summary), at });
    this.#report(deviceKey, { model: summary.model, firmware: summary.firmwareVersion, ...(anchorsDigest ? { anchors: anchorsDigest } : {}) }, at);
  }

  status(deviceKey: number, status: StatusInput, at: number): void {
    this.#status.set(deviceKey, { json: JSON.stringify(status), firmware: status.firmwareVersion, at });
    this.#report(
      deviceKey,
      {
        firmware: status.firmwareVersion,
        ...(status.trustAnchorsDigest ? { anchors: status.trustAnchorsDigest } : {}),
        ...(status.location ? { position: { lat: status.location.lat, lon: status.location.lon } } : {}),
      },
      at,
    );
  }

  #report(deviceKey: number, r: Reported, at: number): void {
    const prev = this.#reported.get(deviceKey);
    this.#reported.set(deviceKey, { ...prev, ...r, at });
  }

  get pending(): number {
    return this.#hello.size + this.#status.size;
  }

  /** Writes everything buffered in one transaction; returns the number of rows written. */
  flush(): number {
    if (this.pending === 0) return 0;
    const hellos = [...this.#hello];
    const statuses = [...this.#status];
    const reported = [...this.#reported];
    this.#hello.clear();
    this.#status.clear();
    this.#reported.clear();
    const upHello = this.store.stmt(
      `INSERT INTO device_status (device_id, hello, hello_at) VALUES (?, ?, ?)
       ON CONFLICT (device_id) DO UPDATE SET hello = excluded.hello, hello_at = excluded.hello_at`,
    );
    const upStatus = this.store.stmt(
      `INSERT INTO device_status (device_id, status, status_at) VALUES (?, ?, ?)
       ON CONFLICT (device_id) DO UPDATE SET status = excluded.status, status_at = excluded.status_at`,
    );
    // The reported firmware is the truth the inventory filters on.
    const firmware = this.store.stmt('UPDATE devices SET firmware = ? WHERE id = ? AND firmware IS NOT ?');
    const exists = this.store.stmt('SELECT 1 FROM devices WHERE id = ?');
    const current = this.store.stmt<{
      reported_model: string | null;
      reported_firmware: string | null;
      reported_anchors: string | null;
      reported_lat: number | null;
      reported_lon: number | null;
    }>('SELECT reported_model, reported_firmware, reported_anchors, reported_lat, reported_lon FROM devices WHERE id = ?');
    const upReported = this.store.stmt(
      `UPDATE devices SET reported_model = ?, reported_firmware = ?, reported_anchors = ?, reported_lat = ?, reported_lon = ?,
       reported_position_at = ? WHERE id = ?`,
    );
    const positionAt = this.store.stmt<{ reported_position_at: number | null }>('SELECT reported_position_at FROM devices WHERE id = ?');
    this.store.write(() => {
      // A device deleted while connected: skip (the foreign key would refuse the row).
      for (const [id, h] of hellos) if (exists.get(id)) upHello.run(id, h.json, h.at);
      for (const [id, s] of statuses) {
        if (!exists.get(id)) continue;
        upStatus.run(id, s.json, s.at);
        firmware.run(s.firmware, id, s.firmware);
      }
      for (const [id, r] of reported) {
        const cur = current.get(id);
        if (!cur) continue;
        const next = {
          model: r.model ?? cur.reported_model,
          firmware: r.firmware ?? cur.reported_firmware,
          anchors: r.anchors ?? cur.reported_anchors,
        };
        const had = cur.reported_lat !== null && cur.reported_lon !== null ? { lat: cur.reported_lat, lon: cur.reported_lon } : undefined;
        const moved = r.position !== undefined && (!had || distanceM(had, r.position) > POSITION_MIN_MOVE_M);
        const changed =
          moved || next.model !== cur.reported_model || next.firmware !== cur.reported_firmware || next.anchors !== cur.reported_anchors;
        if (!changed) continue;
        const pos = moved ? r.position! : had;
        upReported.run(
          next.model,
          next.firmware,
          next.anchors,
          pos?.lat ?? null,
          pos?.lon ?? null,
          moved ? r.at : (positionAt.get(id)?.reported_position_at ?? null),
          id,
        );
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

/** What the account's devices last reported (hello summary and status). Every statement carries `account_id = ?`. */
export class AccountDeviceStatus {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  byDevice(deviceId: number): DeviceStatusRow | undefined {
    return this.store
      .stmt<DeviceStatusRow>(
        `SELECT s.hello, s.hello_at, s.status, s.status_at FROM device_status s JOIN devices d ON d.id = s.device_id
         WHERE s.device_id = ? AND d.account_id = ?`,
      )
      .get(deviceId, this.accountId);
  }
}

export function readDeviceStatus(store: Store, deviceId: number): DeviceStatusRow | undefined {
  return store
    .stmt<DeviceStatusRow>('SELECT hello, hello_at, status, status_at FROM device_status WHERE device_id = ?')
    .get(deviceId);
}
