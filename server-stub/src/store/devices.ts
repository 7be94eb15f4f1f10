import type { AccountRowId, AccountUuid, DeviceRowId, DeviceUuid } from '../ids.js';
import { dialects, type Store } from './database.js';
import { chunks } from './events.js';

export type AdmissionState = 'managed' | 'unmanaged' | 'rejected';
export type DeviceStatus = 'online' | 'unmanaged' | 'offline';

export interface DeviceRow {
  id: number;
  uuid: string;
  account_id: number;
  serial_number: string;
  name: string;
  location: string;
  group_id: number | null;
  group_uuid: string | null;
  model: string | null;
  firmware: string | null;
  ping_interval: number;
  pong_timeout: number;
  session_timeout: number;
  custom_fields: string;
  latitude: number | null;
  longitude: number | null;
  /** What the router itself reported (hello, status); null until it did. */
  reported_model: string | null;
  reported_firmware: string | null;
  reported_anchors: string | null;
  reported_lat: number | null;
  reported_lon: number | null;
  reported_position_at: number | null;
  admission: AdmissionState | null;
  admission_reason: string | null;
  admission_at: number | null;
  online: number;
  connected_at: number | null;
  last_seen_at: number | null;
  created_at: number;
  updated_at: number;
}

export interface ProfileRow {
  id: number;
  uuid: string;
  serial_number: string;
  ping_interval: number;
  pong_timeout: number;
  session_timeout: number;
  credential_enc: Buffer;
}

export interface NewDevice {
  uuid: string;
  serialNumber: string;
  name: string;
  location: string;
  groupId: number | null;
  model: string | null;
  firmware: string | null;
  pingInterval: number;
  pongTimeout: number;
  sessionTimeout: number;
  customFields: Record<string, string>;
  /** WGS 84 degrees; both set or both null. */
  latitude?: number | null;
  longitude?: number | null;
  credentialHash: Buffer;
  credentialSealed: Buffer;
}

export type DevicePatch = Partial<
  Pick<NewDevice, 'name' | 'location' | 'groupId' | 'model' | 'firmware' | 'pingInterval' | 'pongTimeout' | 'sessionTimeout' | 'customFields' | 'latitude' | 'longitude'>
>;

export const DEVICE_SORTS = {
  name: { expr: 'd.name', kind: 'text' },
  serialNumber: { expr: 'd.serial_number', kind: 'text' },
  createdAt: { expr: 'd.created_at', kind: 'number' },
  lastSeenAt: { expr: 'COALESCE(d.last_seen_at, 0)', kind: 'number' },
} as const;
export type DeviceSort = keyof typeof DEVICE_SORTS;

/** Admission as the list filters it: a state, or `none` (never admitted, or its lease ended). */
export type AdmissionFilter = AdmissionState | 'none';

export interface DeviceFilter {
  status?: DeviceStatus;
  admission?: AdmissionFilter;
  groupId?: number;
  model?: string;
  firmware?: string;
  text?: string;
  serialNumber?: string;
}

export interface Keyset {
  value: string | number;
  id: number;
}

const SELECT_DEVICE = `SELECT d.*, g.uuid AS group_uuid FROM devices d LEFT JOIN device_groups g ON g.id = d.group_id`;

const STATUS_SQL: Record<DeviceStatus, string> = {
  online: 'd.online = 1 AND d.admission = \'managed\'',
  unmanaged: 'd.online = 1 AND d.admission = \'unmanaged\'',
  offline: 'NOT (d.online = 1 AND d.admission IN (\'managed\', \'unmanaged\'))',
};

function likeEscape(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** Devices of one account. Every statement carries `account_id = ?`. */
export class AccountDevices {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  byUuid(uuid: string): DeviceRow | undefined {
    return this.store.stmt<DeviceRow>(`${SELECT_DEVICE} WHERE d.account_id = ? AND d.uuid = ?`).get(this.accountId, uuid);
  }

  /**
   * The row ids of the devices of this account among `uuids`, by UUID (one statement for the whole
   * list; a UUID of no device of this account is absent from the map).
   */
  idsByUuid(uuids: readonly string[]): Map<string, number> {
    const rows = this.store
      .stmt<{ uuid: string; id: number }>(
        dialects({
          // CROSS JOIN keeps the list as the outer loop (one lookup in the uuid index per entry):
          // with a plain JOIN SQLite scanned the list once per device of the account (18 s for 15,000).
          sqlite: `SELECT d.uuid AS uuid, d.id AS id FROM json_each(?) t CROSS JOIN devices d ON d.uuid = t.value WHERE d.account_id = ?`,
          postgres: `SELECT d.uuid AS uuid, d.id AS id FROM json_array_elements_text(?::json) AS t(v) JOIN devices d ON d.uuid = t.v WHERE d.account_id = ?`,
        }),
      )
      .all(JSON.stringify(uuids), this.accountId);
    return new Map(rows.map((r) => [r.uuid, Number(r.id)]));
  }

  count(): number {
    return this.store.stmt<{ n: number }>('SELECT COUNT(*) AS n FROM devices WHERE account_id = ?').get(this.accountId)?.n ?? 0;
  }

  insert(d: NewDevice, now: number): void {
    this.store
      .stmt(
        `INSERT INTO devices (uuid, account_id, serial_number, name, location, group_id, model, firmware,
           ping_interval, pong_timeout, session_timeout, custom_fields, credential_hash, credential_enc,
           created_at, updated_at, latitude, longitude)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        d.uuid,
        this.accountId,
        d.serialNumber,
        d.name,
        d.location,
        d.groupId,
        d.model,
        d.firmware,
        d.pingInterval,
        d.pongTimeout,
        d.sessionTimeout,
        JSON.stringify(d.customFields),
        d.credentialHash,
        d.credentialSealed,
        now,
        now,
        d.latitude ?? null,
        d.longitude ?? null,
      );
  }

  /**
   * Inserts many devices in their order (ids ascend as given). On PostgreSQL one multi-row
   * statement per BULK_CHUNK_ROWS devices instead of one round trip each (a CSV import of 20,000
   * routers held the write lock for minutes); on SQLite the prepared single-row insert, which
   * costs microseconds.
   */
  insertMany(devices: readonly NewDevice[], now: number): void {
    if (this.store.dialect !== 'postgres') {
      for (const d of devices) this.insert(d, now);
      return;
    }
    const insert = this.store.stmt(
      `INSERT INTO devices (uuid, account_id, serial_number, name, location, group_id, model, firmware,
         ping_interval, pong_timeout, session_timeout, custom_fields, credential_hash, credential_enc,
         created_at, updated_at, latitude, longitude)
       SELECT d.uuid, ?, d.serial_number, d.name, d.location, d.group_id, d.model, d.firmware,
         d.ping_interval, d.pong_timeout, d.session_timeout, d.custom_fields, d.credential_hash, d.credential_enc,
         ?, ?, d.latitude, d.longitude
       FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::bigint[], ?::text[], ?::text[],
         ?::bigint[], ?::bigint[], ?::bigint[], ?::text[], ?::bytea[], ?::bytea[],
         ?::double precision[], ?::double precision[])
         WITH ORDINALITY AS d(uuid, serial_number, name, location, group_id, model, firmware,
           ping_interval, pong_timeout, session_timeout, custom_fields, credential_hash, credential_enc,
           latitude, longitude, n)
       ORDER BY d.n`,
    );
    for (const c of chunks(devices)) {
      insert.run(
        this.accountId,
        now,
        now,
        c.map((d) => d.uuid),
        c.map((d) => d.serialNumber),
        c.map((d) => d.name),
        c.map((d) => d.location),
        c.map((d) => d.groupId),
        c.map((d) => d.model),
        c.map((d) => d.firmware),
        c.map((d) => d.pingInterval),
        c.map((d) => d.pongTimeout),
        c.map((d) => d.sessionTimeout),
        c.map((d) => JSON.stringify(d.customFields)),
        c.map((d) => d.credentialHash),
        c.map((d) => d.credentialSealed),
        c.map((d) => d.latitude ?? null),
        c.map((d) => d.longitude ?? null),
      );
    }
  }

  update(id: number, patch: DevicePatch, now: number): void {
    const cur = this.store.stmt<DeviceRow>('SELECT * FROM devices WHERE id = ? AND account_id = ?').get(id, this.accountId);
    if (!cur) return;
    this.store
      .stmt(
        `UPDATE devices SET name = ?, location = ?, group_id = ?, model = ?, firmware = ?, ping_interval = ?,
           pong_timeout = ?, session_timeout = ?, custom_fields = ?, latitude = ?, longitude = ?, updated_at = ?
         WHERE id = ? AND account_id = ?`,
      )
      .run(
        patch.name ?? cur.name,
        patch.location ?? cur.location,
        patch.groupId === undefined ? cur.group_id : patch.groupId,
        patch.model === undefined ? cur.model : patch.model,
        patch.firmware === undefined ? cur.firmware : patch.firmware,
        patch.pingInterval ?? cur.ping_interval,
        patch.pongTimeout ?? cur.pong_timeout,
        patch.sessionTimeout ?? cur.session_timeout,
        patch.customFields === undefined ? cur.custom_fields : JSON.stringify(patch.customFields),
        patch.latitude === undefined ? cur.latitude : patch.latitude,
        patch.longitude === undefined ? cur.longitude : patch.longitude,
        now,
        id,
        this.accountId,
      );
  }

  delete(id: number): boolean {
    return this.store.stmt('DELETE FROM devices WHERE id = ? AND account_id = ?').run(id, this.accountId).changes > 0;
  }

  sealedCredential(id: number): Buffer | undefined {
    return this.store
      .stmt<{ credential_enc: Buffer }>('SELECT credential_enc FROM devices WHERE id = ? AND account_id = ?')
      .get(id, this.accountId)?.credential_enc;
  }

  /** What a connection profile needs, `limit` devices after id `afterId` (all, or only `uuids`). */
  profileRows(opts: { afterId: number; limit: number; uuids?: readonly string[] }): ProfileRow[] {
    const cols = `SELECT id, uuid, serial_number, ping_interval, pong_timeout, session_timeout, credential_enc
      FROM devices WHERE account_id = ?`;
    if (!opts.uuids) {
      return this.store
        .stmt<ProfileRow>(`${cols} AND id > ? ORDER BY id LIMIT ?`)
        .all(this.accountId, opts.afterId, opts.limit);
    }
    const one = this.store.stmt<ProfileRow>(`${cols} AND uuid = ?`);
    return opts.uuids.map((u) => one.get(this.accountId, u)).filter((r): r is ProfileRow => r !== undefined);
  }

  /** Keyset-paginated list: rows after `after` in (sort, id) order. */
  list(opts: { filter: DeviceFilter; sort: DeviceSort; desc: boolean; after?: Keyset; limit: number }): DeviceRow[] {
    const { filter } = opts;
    const where: string[] = ['d.account_id = ?'];
    const params: unknown[] = [this.accountId];
    if (filter.status) where.push(STATUS_SQL[filter.status]);
    if (filter.admission === 'none') where.push('d.admission IS NULL');
    else if (filter.admission) {
      where.push('d.admission = ?');
      params.push(filter.admission);
    }
    if (filter.groupId !== undefined) {
      where.push('d.group_id = ?');
      params.push(filter.groupId);
    }
    if (filter.model !== undefined) {
      where.push('d.model = ?');
      params.push(filter.model);
    }
    if (filter.firmware !== undefined) {
      where.push('d.firmware = ?');
      params.push(filter.firmware);
    }
    if (filter.serialNumber !== undefined) {
      where.push('d.serial_number = ?');
      params.push(filter.serialNumber);
    }
    if (filter.text !== undefined) {
      // SQLite's LIKE ignores ASCII case; PostgreSQL's ILIKE is its equal.
      const like = this.store.dialect === 'postgres' ? 'ILIKE' : 'LIKE';
      where.push(
        `(d.name ${like} ? ESCAPE '\\' OR d.serial_number ${like} ? ESCAPE '\\' OR d.location ${like} ? ESCAPE '\\')`,
      );
      const pattern = likeEscape(filter.text);
      params.push(pattern, pattern, pattern);
    }
    const sort = DEVICE_SORTS[opts.sort].expr;
    const cmp = opts.desc ? '<' : '>';
    if (opts.after) {
      where.push(`(${sort} ${cmp} ? OR (${sort} = ? AND d.id ${cmp} ?))`);
      params.push(opts.after.value, opts.after.value, opts.after.id);
    }
    const dir = opts.desc ? 'DESC' : 'ASC';
    params.push(opts.limit);
    // Only whitelisted column expressions are spliced in; every value is a bound parameter.
    return this.store
      .stmt<DeviceRow>(`${SELECT_DEVICE} WHERE ${where.join(' AND ')} ORDER BY ${sort} ${dir}, d.id ${dir} LIMIT ?`)
      .all(...params);
  }

  sortValue(row: DeviceRow, sort: DeviceSort): string | number {
    switch (sort) {
      case 'name':
        return row.name;
      case 'serialNumber':
        return row.serial_number;
      case 'createdAt':
        return row.created_at;
      case 'lastSeenAt':
        return row.last_seen_at ?? 0;
    }
  }
}

export interface GroupRow {
  id: number;
  uuid: string;
  name: string;
  description: string;
  created_at: number;
  device_count: number;
}

const SELECT_GROUP = `SELECT g.id, g.uuid, g.name, g.description, g.created_at,
  (SELECT COUNT(*) FROM devices d WHERE d.group_id = g.id) AS device_count FROM device_groups g`;

/** Device groups of one account. */
export class AccountGroups {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  byUuid(uuid: string): GroupRow | undefined {
    return this.store.stmt<GroupRow>(`${SELECT_GROUP} WHERE g.account_id = ? AND g.uuid = ?`).get(this.accountId, uuid);
  }

  byName(name: string): GroupRow | undefined {
    return this.store.stmt<GroupRow>(`${SELECT_GROUP} WHERE g.account_id = ? AND g.name = ?`).get(this.accountId, name);
  }

  list(opts: { afterId: number; limit: number }): GroupRow[] {
    return this.store
      .stmt<GroupRow>(`${SELECT_GROUP} WHERE g.account_id = ? AND g.id > ? ORDER BY g.id LIMIT ?`)
      .all(this.accountId, opts.afterId, opts.limit);
  }

  insert(g: { uuid: string; name: string; description: string }, now: number): void {
    this.store
      .stmt('INSERT INTO device_groups (uuid, account_id, name, description, created_at) VALUES (?, ?, ?, ?, ?)')
      .run(g.uuid, this.accountId, g.name, g.description, now);
  }

  update(id: number, patch: { name?: string; description?: string }): void {
    this.store
      .stmt(
        'UPDATE device_groups SET name = COALESCE(?, name), description = COALESCE(?, description) WHERE id = ? AND account_id = ?',
      )
      .run(patch.name ?? null, patch.description ?? null, id, this.accountId);
  }

  delete(id: number): boolean {
    return this.store.stmt('DELETE FROM device_groups WHERE id = ? AND account_id = ?').run(id, this.accountId).changes > 0;
  }

  /** Puts devices (of this account only) into the group; returns how many were moved. */
  addMembers(groupId: number, deviceIds: readonly number[], now: number): number {
    const s = this.store.stmt('UPDATE devices SET group_id = ?, updated_at = ? WHERE id = ? AND account_id = ?');
    let n = 0;
    for (const id of deviceIds) n += s.run(groupId, now, id, this.accountId).changes;
    return n;
  }

  removeMember(groupId: number, deviceId: number, now: number): boolean {
    return (
      this.store
        .stmt('UPDATE devices SET group_id = NULL, updated_at = ? WHERE id = ? AND group_id = ? AND account_id = ?')
        .run(now, deviceId, groupId, this.accountId).changes > 0
    );
  }
}

/** What a device hello needs, looked up across accounts (the device is not logged into one). */
export interface DeviceIdentity {
  id: DeviceRowId;
  uuid: DeviceUuid;
  account_id: AccountRowId;
  account_uuid: AccountUuid;
  credential_hash: Buffer;
}

export function findDeviceIdentity(
  store: Store,
  by: { serialNumber?: string; deviceUuid?: string },
): DeviceIdentity | undefined {
  const base = `SELECT d.id, d.uuid, d.account_id, a.uuid AS account_uuid, d.credential_hash
    FROM devices d JOIN accounts a ON a.id = d.account_id`;
  if (by.deviceUuid !== undefined) return store.stmt<DeviceIdentity>(`${base} WHERE d.uuid = ?`).get(by.deviceUuid);
  if (by.serialNumber !== undefined) {
    return store.stmt<DeviceIdentity>(`${base} WHERE d.serial_number = ?`).get(by.serialNumber);
  }
  return undefined;
}

export function setDeviceAdmission(
  store: Store,
  deviceId: number,
  state: AdmissionState,
  reason: string | null,
  at: number,
): void {
  store
    .stmt('UPDATE devices SET admission = ?, admission_reason = ?, admission_at = ? WHERE id = ?')
    .run(state, reason, at, deviceId);
}

export function deviceUuids(store: Store, ids: readonly number[]): DeviceUuid[] {
  const s = store.stmt<{ uuid: DeviceUuid }>('SELECT uuid FROM devices WHERE id = ?');
  return ids.map((id) => s.get(id)?.uuid).filter((u): u is DeviceUuid => u !== undefined);
}

/** Serial numbers are unique across the server: a hello names its serial number, not its account. */
export function serialNumberTaken(store: Store, serialNumber: string): boolean {
  return store.stmt('SELECT 1 FROM devices WHERE serial_number = ?').get(serialNumber) !== undefined;
}

/**
 * Which of `serialNumbers` are registered already (in any account): on PostgreSQL one statement per
 * BULK_CHUNK_ROWS serial numbers, on SQLite the prepared point read (microseconds each).
 */
export function serialNumbersTaken(store: Store, serialNumbers: readonly string[]): Set<string> {
  const taken = new Set<string>();
  if (store.dialect !== 'postgres') {
    for (const s of serialNumbers) if (serialNumberTaken(store, s)) taken.add(s);
    return taken;
  }
  const find = store.stmt<{ serial_number: string }>('SELECT serial_number FROM devices WHERE serial_number = ANY(?::text[])');
  for (const chunk of chunks(serialNumbers)) {
    for (const r of find.all(chunk)) taken.add(r.serial_number);
  }
  return taken;
}

/** Every device's UUID, across accounts (what an external broker's device accounts are reconciled with). */
export function allDeviceUuids(store: Store): DeviceUuid[] {
  return store.stmt<{ uuid: DeviceUuid }>('SELECT uuid FROM devices ORDER BY id').all().map((r) => r.uuid);
}

/** The sealed credential of a device by UUID, across accounts. */
export function sealedCredentialByUuid(store: Store, uuid: string): Buffer | undefined {
  return store.stmt<{ credential_enc: Buffer }>('SELECT credential_enc FROM devices WHERE uuid = ?').get(uuid)?.credential_enc;
}

/**
 * The identities of many hellos at once (each by its uuid, else by its serial number), in the
 * order asked; undefined where no device matches. On PostgreSQL one statement per BULK_CHUNK_ROWS
 * hellos instead of a round trip each; on SQLite the prepared point read (microseconds each).
 */
export function findDeviceIdentities(
  store: Store,
  requests: ReadonlyArray<{ serialNumber?: string; deviceUuid?: string }>,
): Array<DeviceIdentity | undefined> {
  if (store.dialect !== 'postgres') return requests.map((r) => findDeviceIdentity(store, r));
  const find = store.stmt<DeviceIdentity & { serial_number: string }>(
    `SELECT d.id, d.uuid, d.account_id, a.uuid AS account_uuid, d.credential_hash, d.serial_number
     FROM devices d JOIN accounts a ON a.id = d.account_id
     WHERE d.uuid = ANY(?::text[]) OR d.serial_number = ANY(?::text[])`,
  );
  const byUuid = new Map<string, DeviceIdentity>();
  const bySerial = new Map<string, DeviceIdentity>();
  for (const chunk of chunks(requests)) {
    const uuids = chunk.flatMap((r) => (r.deviceUuid !== undefined ? [r.deviceUuid] : []));
    const serials = chunk.flatMap((r) => (r.deviceUuid === undefined && r.serialNumber !== undefined ? [r.serialNumber] : []));
    if (uuids.length + serials.length === 0) continue;
    for (const { serial_number, ...identity } of find.all(uuids, serials)) {
      byUuid.set(identity.uuid, identity);
      bySerial.set(serial_number, identity);
    }
  }
  return requests.map((r) => {
    if (r.deviceUuid !== undefined) return byUuid.get(r.deviceUuid);
    return r.serialNumber !== undefined ? bySerial.get(r.serialNumber) : undefined;
  });
}

/** One device's admission as the batch of hellos left it (see `setDeviceAdmissions`). */
export interface DeviceAdmission {
  readonly deviceId: number;
  readonly state: AdmissionState;
  readonly reason: string | null;
  readonly at: number;
}

/**
 * Sets the admission of many devices (each device once): on PostgreSQL one statement per
 * BULK_CHUNK_ROWS devices, on SQLite the prepared single-row update.
 */
export function setDeviceAdmissions(store: Store, rows: readonly DeviceAdmission[]): void {
  if (store.dialect !== 'postgres') {
    for (const r of rows) setDeviceAdmission(store, r.deviceId, r.state, r.reason, r.at);
    return;
  }
  const update = store.stmt(
    `UPDATE devices SET admission = u.admission, admission_reason = u.reason, admission_at = u.at
     FROM unnest(?::bigint[], ?::text[], ?::text[], ?::bigint[]) AS u(id, admission, reason, at)
     WHERE devices.id = u.id`,
  );
  for (const c of chunks(rows)) {
    update.run(c.map((r) => r.deviceId), c.map((r) => r.state), c.map((r) => r.reason), c.map((r) => r.at));
  }
}
