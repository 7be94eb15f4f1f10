import { dialects, listParam, type Store } from './database.js';
import type { DeviceRow } from './devices.js';
import { chunks } from './events.js';

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
    this.store.write(() => {
      // One read of every device concerned: whether it still exists (a device deleted while
      // connected is skipped: the foreign key would refuse its row) and what it reported before.
      const current = this.#current([...new Set([...hellos.map(([id]) => id), ...statuses.map(([id]) => id), ...reported.map(([id]) => id)])]);
      const changes: ReportedChange[] = [];
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
        changes.push({
          id,
          model: next.model,
          firmware: next.firmware,
          anchors: next.anchors,
          lat: pos?.lat ?? null,
          lon: pos?.lon ?? null,
          positionAt: moved ? r.at : cur.reported_position_at,
        });
      }
      this.#upsert('hello', hellos.filter(([id]) => current.has(id)).map(([id, h]) => ({ id, json: h.json, at: h.at })));
      const known = statuses.filter(([id]) => current.has(id));
      this.#upsert('status', known.map(([id, s]) => ({ id, json: s.json, at: s.at })));
      this.#firmware(known.map(([id, s]) => ({ id, firmware: s.firmware })));
      this.#writeReported(changes);
    });
    return hellos.length + statuses.length;
  }

  /** The devices among `ids` that exist, with what they reported before (one statement). */
  #current(ids: readonly number[]): Map<number, CurrentReported> {
    const rows = ids.length === 0 ? [] : this.store
      .stmt<CurrentReported>(
        dialects({
          sqlite: `SELECT id, reported_model, reported_firmware, reported_anchors, reported_lat, reported_lon, reported_position_at
                   FROM devices WHERE id IN (SELECT value FROM json_each(?))`,
          postgres: `SELECT id, reported_model, reported_firmware, reported_anchors, reported_lat, reported_lon, reported_position_at
                     FROM devices WHERE id = ANY(?::bigint[])`,
        }),
      )
      .all(listParam(this.store, ids));
    return new Map(rows.map((r) => [r.id, r]));
  }

  /** The latest hello summary or status of each device: one statement on PostgreSQL, the prepared one per device on SQLite. */
  #upsert(kind: 'hello' | 'status', rows: readonly { id: number; json: string; at: number }[]): void {
    if (rows.length === 0) return;
    if (this.store.dialect !== 'postgres') {
      const up = this.store.stmt(
        kind === 'hello'
          ? `INSERT INTO device_status (device_id, hello, hello_at) VALUES (?, ?, ?)
             ON CONFLICT (device_id) DO UPDATE SET hello = excluded.hello, hello_at = excluded.hello_at`
          : `INSERT INTO device_status (device_id, status, status_at) VALUES (?, ?, ?)
             ON CONFLICT (device_id) DO UPDATE SET status = excluded.status, status_at = excluded.status_at`,
      );
      for (const r of rows) up.run(r.id, r.json, r.at);
      return;
    }
    const up = this.store.stmt(
      kind === 'hello'
        ? `INSERT INTO device_status (device_id, hello, hello_at) SELECT * FROM unnest(?::bigint[], ?::text[], ?::bigint[])
           ON CONFLICT (device_id) DO UPDATE SET hello = excluded.hello, hello_at = excluded.hello_at`
        : `INSERT INTO device_status (device_id, status, status_at) SELECT * FROM unnest(?::bigint[], ?::text[], ?::bigint[])
           ON CONFLICT (device_id) DO UPDATE SET status = excluded.status, status_at = excluded.status_at`,
    );
    for (const chunk of chunks(rows)) {
      up.run(chunk.map((r) => r.id), chunk.map((r) => r.json), chunk.map((r) => r.at));
    }
  }

  /** The reported firmware is the truth the inventory filters on (written where it changed). */
  #firmware(rows: readonly { id: number; firmware: string }[]): void {
    if (rows.length === 0) return;
    if (this.store.dialect !== 'postgres') {
      const up = this.store.stmt('UPDATE devices SET firmware = ? WHERE id = ? AND firmware IS NOT ?');
      for (const r of rows) up.run(r.firmware, r.id, r.firmware);
      return;
    }
    const up = this.store.stmt(
      `UPDATE devices d SET firmware = u.firmware FROM unnest(?::bigint[], ?::text[]) AS u(id, firmware)
       WHERE d.id = u.id AND d.firmware IS DISTINCT FROM u.firmware`,
    );
    for (const chunk of chunks(rows)) {
      up.run(chunk.map((r) => r.id), chunk.map((r) => r.firmware));
    }
  }

  #writeReported(rows: readonly ReportedChange[]): void {
    if (rows.length === 0) return;
    if (this.store.dialect !== 'postgres') {
      const up = this.store.stmt(
        `UPDATE devices SET reported_model = ?, reported_firmware = ?, reported_anchors = ?, reported_lat = ?, reported_lon = ?,
         reported_position_at = ? WHERE id = ?`,
      );
      for (const r of rows) up.run(r.model, r.firmware, r.anchors, r.lat, r.lon, r.positionAt, r.id);
      return;
    }
    const up = this.store.stmt(
      `UPDATE devices d SET reported_model = u.model, reported_firmware = u.firmware, reported_anchors = u.anchors,
         reported_lat = u.lat, reported_lon = u.lon, reported_position_at = u.position_at
       FROM unnest(?::bigint[], ?::text[], ?::text[], ?::text[], ?::float8[], ?::float8[], ?::bigint[])
         AS u(id, model, firmware, anchors, lat, lon, position_at)
       WHERE d.id = u.id`,
    );
    for (const c of chunks(rows)) {
      up.run(
        c.map((r) => r.id), c.map((r) => r.model), c.map((r) => r.firmware), c.map((r) => r.anchors),
        c.map((r) => r.lat), c.map((r) => r.lon), c.map((r) => r.positionAt),
      );
    }
  }
}

type CurrentReported = Pick<
  DeviceRow,
  'id' | 'reported_model' | 'reported_firmware' | 'reported_anchors' | 'reported_lat' | 'reported_lon' | 'reported_position_at'
>;

interface ReportedChange {
  id: number;
  model: string | null;
  firmware: string | null;
  anchors: string | null;
  lat: number | null;
  lon: number | null;
  positionAt: number | null;
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
