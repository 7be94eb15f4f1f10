import { randomUUID } from 'node:crypto';
import { SERIAL_NUMBER_CHARS } from '@router-fleet/protocol';
import type { AdmissionService } from '../admission/service.js';
import type { Clock } from '../clock.js';
import { type ImportReport, parseCsv, type RowError, rowError, rowObject } from '../csv.js';
import { DEVICE_CSV_COLUMNS, DEVICE_CSV_CUSTOM_PREFIX, DEVICE_CSV_REQUIRED } from '../import-columns.js';
import { textViolation, type ValidationRule } from '../validation.js';
import { AppError, isAppError } from '../errors.js';
import type { LicensingService } from '../licensing/service.js';
import type { Store } from '../store/database.js';
import type { BrokerAccounts } from '../channel/mqtt/broker-accounts.js';
import type { NoticeBus } from '../channel/notices.js';
import { asDeviceUuid } from '../ids.js';
import {
  allDeviceUuids,
  type DevicePatch,
  type DeviceRow,
  type GroupRow,
  type NewDevice,
  sealedCredentialByUuid,
  serialNumbersTaken,
  serialNumberTaken,
} from '../store/devices.js';
import type { AccountScope } from '../store/scope.js';
import type { CredentialVault } from './credentials.js';

/** Keep-alive defaults of the real product's API; we define the unit as seconds (docs/licensing.md). */
export const DEVICE_DEFAULTS = {
  connectionPingInterval: 120,
  connectionPongTimeout: 104,
  connectionSessionTimeout: 16,
} as const;

/**
 * A serial number the server registers: protocol's serial number (1–64 of `[A-Za-z0-9._-]`, what a
 * hello may carry) that also starts with a letter or digit: registration is stricter than the wire.
 */
export const SERIAL_PATTERN = new RegExp(`^[A-Za-z0-9][${SERIAL_NUMBER_CHARS}]{0,63}$`);
export const CUSTOM_FIELD_KEY = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
export const KEEPALIVE_LIMITS = {
  connectionPingInterval: { min: 5, max: 86_400 },
  connectionPongTimeout: { min: 1, max: 86_400 },
  connectionSessionTimeout: { min: 1, max: 86_400 },
} as const;

export interface DeviceInput {
  serialNumber: string;
  name?: string;
  location?: string;
  groupUuid?: string | null;
  model?: string | null;
  firmware?: string | null;
  connectionPingInterval?: number;
  connectionPongTimeout?: number;
  connectionSessionTimeout?: number;
  customFields?: Record<string, string>;
  /** WGS 84 degrees (-90..90); given together with longitude; null clears both. */
  latitude?: number | null;
  /** WGS 84 degrees (-180..180). */
  longitude?: number | null;
}

/**
 * SERVER_VALIDATION for one field, with the details a client translates (`ValidationDetails`):
 * `field` is a JSON pointer (`/latitude`, `/customFields/site`); a CSV import's report says
 * `in: csv` for its rows' errors, naming the column the same way.
 */
function fieldError(field: string, rule: ValidationRule, message: string, limit?: number): AppError {
  return new AppError('SERVER_VALIDATION', message, { details: { in: 'body', field, rule, ...(limit === undefined ? {} : { limit }) } });
}

/** A CSV column as the pointer of the JSON field it fills (`customFields.site` → `/customFields/site`). */
function columnPointer(column: string): string {
  return column.startsWith(DEVICE_CSV_CUSTOM_PREFIX) ? `/customFields/${column.slice(DEVICE_CSV_CUSTOM_PREFIX.length)}` : `/${column}`;
}

/** Checks a coordinate pair: both given or neither, both numbers in range or both null. */
export function coordinates(input: {
  latitude?: number | null | undefined;
  longitude?: number | null | undefined;
}): { latitude: number | null; longitude: number | null } | undefined {
  const { latitude: lat, longitude: lon } = input;
  if (lat === undefined && lon === undefined) return undefined;
  if (lat === null && lon === null) return { latitude: null, longitude: null };
  if (typeof lat !== 'number' || typeof lon !== 'number') {
    const missing = typeof lat === 'number' ? '/longitude' : '/latitude';
    throw new AppError('SERVER_VALIDATION', 'latitude and longitude are set together (both numbers, or both null).', {
      details: { in: 'body', field: missing, rule: 'required' },
    });
  }
  for (const [name, value, bound] of [['latitude', lat, 90], ['longitude', lon, 180]] as const) {
    if (!Number.isFinite(value)) throw fieldError(`/${name}`, 'type', `${name} must be a number from -${bound} to ${bound} (degrees).`);
    if (value < -bound || value > bound) {
      throw fieldError(`/${name}`, value < -bound ? 'minimum' : 'maximum', `${name} must be a number from -${bound} to ${bound} (degrees).`, value < -bound ? -bound : bound);
    }
  }
  return { latitude: lat, longitude: lon };
}

export type DeviceUpdate = Omit<Partial<DeviceInput>, 'serialNumber'>;

const CSV_COLUMNS: ReadonlySet<string> = new Set(DEVICE_CSV_COLUMNS);
/** Row errors (and registered rows) listed in one import report; the counts of all are always given. */
const MAX_REPORTED_ERRORS = 1000;

/** A row of a CSV import that registered a device. */
export interface ImportedRow {
  /** Line in the file. */
  readonly line: number;
  readonly serialNumber: string;
  readonly uuid: string;
}

/** The device import's report: the rows registered (the first MAX_REPORTED_ERRORS) besides the refused ones. */
export interface DeviceImportReport extends ImportReport {
  readonly accepted: ImportedRow[];
}

/** What becomes of a broker account change that failed (it is redone by the next reconcile). */
export type BrokerAccountsFailure = (op: 'provision' | 'remove', deviceIds: readonly string[], err: unknown) => void;

/** Registration, metadata and CSV mass registration of devices. */
export class DeviceService {
  #broker: { accounts: BrokerAccounts; onFailure: BrokerAccountsFailure } | undefined;
  readonly #brokerWork = new Set<Promise<void>>();
  readonly #deletedDuringReconcile = new Set<Set<string>>();

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly vault: CredentialVault,
    private readonly licensing: LicensingService,
    private readonly admission: AdmissionService,
    /** Where a deletion is announced: the deleted device's session ends wherever it is held. */
    private readonly notices?: Pick<NoticeBus, 'publish'>,
  ) {}

  /**
   * Keeps an external broker's device accounts in step: registrations provision, deletions remove,
   * after the store has committed and without waiting (a broker that is slow or away never fails
   * nor delays a REST request; `onFailure` hears of it and the next reconcile redoes it).
   */
  useBrokerAccounts(accounts: BrokerAccounts | undefined, onFailure: BrokerAccountsFailure = () => {}): void {
    this.#broker = accounts ? { accounts, onFailure } : undefined;
  }

  /** Brings the broker's device accounts in step with every device of the store (all accounts). */
  async reconcileBroker(): Promise<{ created: number; removed: number }> {
    const broker = this.#broker;
    if (!broker) return { created: 0, removed: 0 };
    // A device deleted after the store was read may be provisioned again by this reconcile (its
    // removal went out first): such devices are removed once more after it.
    const deleted = new Set<string>();
    this.#deletedDuringReconcile.add(deleted);
    try {
      return await broker.accounts.reconcile({ [Symbol.iterator]: () => allDeviceUuids(this.store)[Symbol.iterator]() }, (uuid) => {
        const sealed = sealedCredentialByUuid(this.store, uuid);
        if (!sealed) return undefined;
        try {
          return this.vault.reveal(sealed);
        } catch {
          return undefined;
        }
      });
    } finally {
      this.#deletedDuringReconcile.delete(deleted);
      const again = [...deleted];
      this.#toBroker('remove', again, (a) => a.remove(again));
    }
  }

  /** Resolves when the broker account changes started so far have ended (shutdown, tests). */
  async brokerSettled(): Promise<void> {
    while (this.#brokerWork.size > 0) await Promise.allSettled([...this.#brokerWork]);
  }

  #toBroker(op: 'provision' | 'remove', deviceIds: readonly string[], run: (a: BrokerAccounts) => Promise<void>): void {
    const broker = this.#broker;
    if (!broker || deviceIds.length === 0) return;
    const work = run(broker.accounts).catch((err: unknown) => broker.onFailure(op, deviceIds, err));
    this.#brokerWork.add(work);
    void work.finally(() => this.#brokerWork.delete(work));
  }

  create(scope: AccountScope, input: DeviceInput): DeviceRow {
    const now = this.clock.now();
    let secret = '';
    const uuid = scope.write(() => {
      const ent = this.licensing.requireActivePlan(scope, now);
      if (input.customFields && Object.keys(input.customFields).length > 0) {
        this.licensing.requireFeature(scope, 'customFields', now);
      }
      if (ent.registrationLimit !== null && scope.devices.count() >= ent.registrationLimit) {
        throw new AppError('SERVER_PLAN_DEVICE_LIMIT');
      }
      const { device, credential } = this.#newDevice(input, this.#groupId(scope, input.groupUuid));
      if (serialNumberTaken(this.store, device.serialNumber)) throw new AppError('SERVER_DEVICE_SERIAL_TAKEN');
      scope.devices.insert(device, now);
      secret = credential;
      return device.uuid;
    });
    this.#toBroker('provision', [uuid], (a) => a.provision([{ deviceId: uuid, credential: secret }]));
    return scope.devices.byUuid(uuid)!;
  }

  update(scope: AccountScope, uuid: string, input: DeviceUpdate): DeviceRow {
    const now = this.clock.now();
    scope.write(() => {
      this.licensing.requireActivePlan(scope, now);
      const cur = scope.devices.byUuid(uuid);
      if (!cur) throw new AppError('SERVER_NOT_FOUND');
      if (input.customFields !== undefined) this.licensing.requireFeature(scope, 'customFields', now);
      const patch: DevicePatch = {};
      if (input.name !== undefined) patch.name = input.name;
      if (input.location !== undefined) patch.location = input.location;
      if (input.model !== undefined) patch.model = input.model;
      if (input.firmware !== undefined) patch.firmware = input.firmware;
      if (input.connectionPingInterval !== undefined) patch.pingInterval = input.connectionPingInterval;
      if (input.connectionPongTimeout !== undefined) patch.pongTimeout = input.connectionPongTimeout;
      if (input.connectionSessionTimeout !== undefined) patch.sessionTimeout = input.connectionSessionTimeout;
      if (input.customFields !== undefined) patch.customFields = input.customFields;
      if (input.groupUuid !== undefined) patch.groupId = this.#groupId(scope, input.groupUuid);
      const coords = coordinates(input);
      if (coords) Object.assign(patch, coords);
      scope.devices.update(cur.id, patch, now);
    });
    return scope.devices.byUuid(uuid)!;
  }

  delete(scope: AccountScope, uuid: string): void {
    const now = this.clock.now();
    scope.write(() => {
      this.licensing.requireActivePlan(scope, now);
      const cur = scope.devices.byUuid(uuid);
      if (!cur) throw new AppError('SERVER_NOT_FOUND');
      scope.devices.delete(cur.id);
    });
    for (const s of this.#deletedDuringReconcile) s.add(uuid);
    this.#toBroker('remove', [uuid], (a) => a.remove([uuid]));
    // Its broker connection may end without a will (Mosquitto drops a deleted client without
    // publishing it), so the session is ended by the server itself.
    this.notices?.publish({ kind: 'device-deleted', deviceUuids: [asDeviceUuid(uuid)] });
    // A deleted device may have held a seat that a waiting device can now have.
    this.admission.reconcile(scope.accountId, now);
  }

  /** The device secret, for the connection profile (delivered later by the profile route). */
  credential(scope: AccountScope, uuid: string): string {
    const device = scope.devices.byUuid(uuid);
    const sealed = device && scope.devices.sealedCredential(device.id);
    if (!sealed) throw new AppError('SERVER_NOT_FOUND');
    return this.vault.reveal(sealed);
  }

  /**
   * CSV mass registration: the header names the columns (DEVICE_CSV_COLUMNS, plus `customFields.<key>`).
   * One transaction, all or nothing unless `partial` is asked for; the store is asked set-wise (one
   * lookup of the serial numbers and one multi-row insert per chunk on PostgreSQL), so the write
   * lock is held for a few round trips, not two per row.
   */
  importCsv(scope: AccountScope, body: Buffer | string, partial: boolean, maxRows: number): DeviceImportReport {
    const now = this.clock.now();
    const table = parseCsv(body, maxRows);
    if (!table.header.includes(DEVICE_CSV_REQUIRED)) {
      throw new AppError('SERVER_CSV_INVALID', `The CSV header has no "${DEVICE_CSV_REQUIRED}" column.`, {
        details: { in: 'csv', field: `/${DEVICE_CSV_REQUIRED}`, rule: 'required' },
      });
    }
    const unknown = table.header.filter(
      (h) => !CSV_COLUMNS.has(h)
        && !(h.startsWith(DEVICE_CSV_CUSTOM_PREFIX) && CUSTOM_FIELD_KEY.test(h.slice(DEVICE_CSV_CUSTOM_PREFIX.length))),
    );
    if (unknown.length > 0) {
      throw new AppError('SERVER_CSV_INVALID', `Unknown CSV columns: ${unknown.join(', ')}.`, {
        details: { in: 'csv', field: columnPointer(unknown[0]!), rule: 'unknownProperty' },
      });
    }
    const customColumns = table.header.filter((h) => h.startsWith(DEVICE_CSV_CUSTOM_PREFIX));
    const errors: RowError[] = [];
    let errorCount = 0;
    const fail = (line: number, err: AppError | RowError) => {
      errorCount++;
      if (errors.length < MAX_REPORTED_ERRORS) errors.push(rowError(line, err));
    };
    let imported = 0;
    let registered: { deviceId: string; credential: string }[] = [];
    let accepted: ImportedRow[] = [];
    let outcome: 'ok' | 'rolled-back' = 'ok';
    try {
      scope.write(() => {
        const ent = this.licensing.requireActivePlan(scope, now);
        if (customColumns.length > 0) this.licensing.requireFeature(scope, 'customFields', now);
        let count = scope.devices.count();
        const seenSerials = new Set<string>();
        const groups = new Map<string, number | null>();
        const groupOf = (key: string, find: () => GroupRow | undefined): number => {
          let id = groups.get(key);
          if (id === undefined) {
            id = find()?.id ?? null;
            groups.set(key, id);
          }
          if (id === null) throw fieldError(key.startsWith('u:') ? '/groupUuid' : '/group', 'oneOf', `Unknown device group "${key.slice(2)}".`);
          return id;
        };
        // Set-based: the rows are checked in memory first (in file order, so a serial number is
        // "seen" exactly where it was before), then the serial numbers the store already has are
        // looked up for all of them at once, then the registration limit and that lookup are
        // applied in file order, and the accepted devices are inserted together. Each line gets
        // the same verdict, in the same order of checks, as when every row was checked and
        // inserted alone: cells, text, columns, duplicate in the file, group, limit, device
        // fields, serial number registered already.
        type Checked =
          | { readonly line: number; readonly error: AppError | RowError }
          | { readonly line: number; readonly error?: undefined; readonly input: DeviceInput; readonly groupId: number | null; readonly invalid?: AppError };
        const checked: Checked[] = [];
        for (const row of table.rows) {
          const obj = rowObject(table.header, row);
          if (!obj) {
            checked.push({
              line: row.line,
              error: { line: row.line, code: 'SERVER_CSV_INVALID', message: 'Wrong number of cells.', details: { in: 'csv', field: '', rule: 'invalid' } },
            });
            continue;
          }
          try {
            // The same text rules as the JSON routes: every cell is a single-line value.
            for (const [column, value] of Object.entries(obj)) {
              const why = textViolation(value, 'line');
              if (why) throw fieldError(columnPointer(column), 'text', `${column}: ${why}`);
            }
            const input = this.#csvInput(obj, customColumns);
            if (seenSerials.has(input.serialNumber)) {
              throw new AppError('SERVER_DEVICE_SERIAL_TAKEN', 'The serial number occurs twice in this file.');
            }
            seenSerials.add(input.serialNumber);
            const byUuid = obj['groupUuid'];
            const byName = obj['group'];
            let groupId: number | null = null;
            if (byUuid) groupId = groupOf(`u:${byUuid}`, () => scope.groups.byUuid(byUuid));
            else if (byName) groupId = groupOf(`n:${byName}`, () => scope.groups.byName(byName));
            let invalid: AppError | undefined;
            try {
              this.#checkNewDevice(input);
            } catch (err) {
              if (!isAppError(err)) throw err;
              invalid = err;
            }
            checked.push(invalid ? { line: row.line, input, groupId, invalid } : { line: row.line, input, groupId });
          } catch (err) {
            if (!isAppError(err)) throw err;
            checked.push({ line: row.line, error: err });
          }
        }
        const taken = serialNumbersTaken(
          this.store,
          checked.flatMap((c) => (c.error === undefined && c.invalid === undefined ? [c.input.serialNumber] : [])),
        );
        const devices: NewDevice[] = [];
        for (const c of checked) {
          if (c.error !== undefined) {
            fail(c.line, c.error);
            continue;
          }
          if (ent.registrationLimit !== null && count >= ent.registrationLimit) {
            fail(c.line, new AppError('SERVER_PLAN_DEVICE_LIMIT'));
            continue;
          }
          if (c.invalid) {
            fail(c.line, c.invalid);
            continue;
          }
          if (taken.has(c.input.serialNumber)) {
            fail(c.line, new AppError('SERVER_DEVICE_SERIAL_TAKEN'));
            continue;
          }
          const { device, credential } = this.#newDevice(c.input, c.groupId);
          devices.push(device);
          registered.push({ deviceId: device.uuid, credential });
          if (accepted.length < MAX_REPORTED_ERRORS) accepted.push({ line: c.line, serialNumber: device.serialNumber, uuid: device.uuid });
          imported++;
          count++;
        }
        if (errorCount > 0 && !partial) throw new RollBack();
        scope.devices.insertMany(devices, now);
      });
    } catch (err) {
      if (!(err instanceof RollBack)) throw err;
      outcome = 'rolled-back';
      registered = [];
      accepted = [];
    }
    const devices = registered;
    this.#toBroker('provision', devices.map((d) => d.deviceId), (a) => a.provision(devices));
    const report: DeviceImportReport = {
      rows: table.rows.length,
      imported: outcome === 'ok' ? imported : 0,
      failed: errorCount,
      partial,
      errors,
      accepted,
    };
    if (outcome !== 'ok') throw new AppError('SERVER_CSV_ROWS_INVALID', undefined, { details: report });
    return report;
  }

  #groupId(scope: AccountScope, groupUuid: string | null | undefined): number | null {
    if (groupUuid === undefined || groupUuid === null || groupUuid === '') return null;
    const g = scope.groups.byUuid(groupUuid);
    // A group of another account is indistinguishable from a missing one.
    if (!g) throw fieldError('/groupUuid', 'oneOf', `Unknown device group ${groupUuid}.`);
    return g.id;
  }

  /** Throws the validation error of a new device's fields, if any (what #newDevice checks). */
  #checkNewDevice(input: DeviceInput): { latitude: number | null; longitude: number | null } | undefined {
    if (!SERIAL_PATTERN.test(input.serialNumber)) {
      throw fieldError('/serialNumber', 'pattern', 'serialNumber must be 1-64 letters, digits, ".", "_" or "-".');
    }
    for (const key of Object.keys(input.customFields ?? {})) {
      if (!CUSTOM_FIELD_KEY.test(key)) throw fieldError(`/customFields/${key}`, 'pattern', `Invalid custom field name "${key}".`);
    }
    return coordinates(input);
  }

  #newDevice(input: DeviceInput, groupId: number | null): { device: NewDevice; credential: string } {
    const coords = this.#checkNewDevice(input);
    const cred = this.vault.issue();
    const device: NewDevice = {
      ...coords,
      uuid: randomUUID(),
      serialNumber: input.serialNumber,
      name: input.name ?? '',
      location: input.location ?? '',
      groupId,
      model: input.model ?? null,
      firmware: input.firmware ?? null,
      pingInterval: input.connectionPingInterval ?? DEVICE_DEFAULTS.connectionPingInterval,
      pongTimeout: input.connectionPongTimeout ?? DEVICE_DEFAULTS.connectionPongTimeout,
      sessionTimeout: input.connectionSessionTimeout ?? DEVICE_DEFAULTS.connectionSessionTimeout,
      customFields: input.customFields ?? {},
      credentialHash: cred.hash,
      credentialSealed: cred.sealed,
    };
    return { device, credential: cred.secret };
  }

  #csvInput(obj: Record<string, string>, customColumns: readonly string[]): DeviceInput {
    const input: DeviceInput = { serialNumber: obj['serialNumber'] ?? '' };
    if (obj['name']) input.name = obj['name'];
    if (obj['location']) input.location = obj['location'];
    if (obj['model']) input.model = obj['model'];
    if (obj['firmware']) input.firmware = obj['firmware'];
    for (const key of ['connectionPingInterval', 'connectionPongTimeout', 'connectionSessionTimeout'] as const) {
      const raw = obj[key];
      if (!raw) continue;
      const n = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
      const { min, max } = KEEPALIVE_LIMITS[key];
      if (!Number.isSafeInteger(n) || n < min || n > max) {
        const message = `${key} must be an integer from ${min} to ${max} (seconds).`;
        if (!Number.isSafeInteger(n)) throw fieldError(`/${key}`, 'type', message);
        throw fieldError(`/${key}`, n < min ? 'minimum' : 'maximum', message, n < min ? min : max);
      }
      input[key] = n;
    }
    for (const key of ['latitude', 'longitude'] as const) {
      const raw = obj[key]?.trim();
      if (!raw) continue;
      const n = /^[+-]?(\d+(\.\d*)?|\.\d+)$/.test(raw) ? Number(raw) : Number.NaN;
      if (!Number.isFinite(n)) throw fieldError(`/${key}`, 'type', `${key} must be a decimal number (degrees).`);
      input[key] = n;
    }
    if ((input.latitude === undefined) !== (input.longitude === undefined)) {
      throw fieldError(input.latitude === undefined ? '/latitude' : '/longitude', 'required', 'latitude and longitude are given together.');
    }
    for (const name of ['name', 'location', 'model', 'firmware'] as const) {
      if ((obj[name]?.length ?? 0) > 200) throw fieldError(`/${name}`, 'maxLength', `${name} is longer than 200 characters.`, 200);
    }
    if (customColumns.length > 0) {
      const custom: Record<string, string> = {};
      for (const col of customColumns) {
        const v = obj[col];
        if (v) custom[col.slice(DEVICE_CSV_CUSTOM_PREFIX.length)] = v;
      }
      input.customFields = custom;
    }
    return input;
  }
}

class RollBack extends Error {}
