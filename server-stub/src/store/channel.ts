import type { AccountRowId } from '../ids.js';
import { dialects, listParam, type Store } from './database.js';
import { recordAccountEvents } from './events.js';

/** What the control channel reads about a device when its hello arrives. */
export interface DeviceFacts {
  readonly id: number;
  readonly account_id: AccountRowId;
  readonly serial_number: string;
  readonly ping_interval: number;
  readonly pong_timeout: number;
  readonly session_timeout: number;
  /** The account's settings (JSON). */
  readonly settings: string;
}

/** One device event to store (the body of an `event` message, with whose it is). */
export interface DeviceEventInput {
  /** Account row id. */
  readonly accountKey: number;
  readonly deviceUuid: string;
  readonly seq: number;
  readonly kind: string;
  readonly severity: string;
  readonly at: number;
  readonly details?: unknown;
}

/**
 * The reads and writes of the control channel, so that channel/ holds no SQL: device facts for a
 * hello, account keys for trust-anchor notices, device events in one transaction.
 */
export class ChannelRepository {
  readonly #accountKey;

  constructor(private readonly store: Store) {
    this.#accountKey = store.stmt<{ id: number }>('SELECT id FROM accounts WHERE uuid = ?');
  }

  /**
   * The facts of the devices among `deviceUuids` that exist, by uuid: one statement for a whole
   * batch of hellos (on PostgreSQL each statement is a round trip on the event loop).
   */
  deviceFacts(deviceUuids: readonly string[]): Map<string, DeviceFacts> {
    if (deviceUuids.length === 0) return new Map();
    const rows = this.store
      .stmt<DeviceFacts & { uuid: string }>(
        dialects({
          sqlite: `SELECT d.uuid, d.id, d.account_id, d.serial_number, d.ping_interval, d.pong_timeout, d.session_timeout, a.settings
                   FROM devices d JOIN accounts a ON a.id = d.account_id WHERE d.uuid IN (SELECT value FROM json_each(?))`,
          postgres: `SELECT d.uuid, d.id, d.account_id, d.serial_number, d.ping_interval, d.pong_timeout, d.session_timeout, a.settings
                     FROM devices d JOIN accounts a ON a.id = d.account_id WHERE d.uuid = ANY(?::text[])`,
        }),
      )
      .all(listParam(this.store, deviceUuids));
    return new Map(rows.map(({ uuid, ...facts }) => [uuid, facts]));
  }

  /** The row id of the account with this uuid. */
  accountKey(accountUuid: string): number | undefined {
    return this.#accountKey.get(accountUuid)?.id;
  }

  /**
   * Stores device events in one transaction (durable before the acks). A seq seen before is ignored
   * by the event log's dedupe key, so a resent event is stored once.
   */
  recordDeviceEvents(events: readonly DeviceEventInput[], now: number): void {
    this.store.write(() => recordAccountEvents(this.store, events.map((e) => ({
      accountId: e.accountKey,
      type: 'device.event',
      subject: e.deviceUuid,
      data: { seq: e.seq, kind: e.kind, severity: e.severity, at: e.at, ...(e.details ? { details: e.details } : {}) },
      at: now,
      dedupeKey: `device-event:${e.deviceUuid}:${e.seq}`,
    }))));
  }
}
