import { type AccountRowId, asAccountRowId } from '../ids.js';
import { AccountApiTokens, type AccountRow, Accounts, AccountUsers } from './accounts.js';
import { AccountDashboard } from './dashboard.js';
import type { Store } from './database.js';
import { AccountDeviceStatus } from './device-status.js';
import { AccountDevices, AccountGroups } from './devices.js';
import { AccountEventLog } from './event-log.js';
import { AccountEvents } from './events.js';
import { AccountLeases } from './leases.js';
import { AccountLicences } from './licences.js';
import { AccountLive } from './live.js';

/**
 * Every repository of one account, bound to its id. Request handlers only ever receive this scope
 * (from the request context), never the raw store: ownership is checked here, in the SQL of each
 * repository (`account_id = ?`), and nowhere ad hoc. An id from another account is simply not
 * found, which the routes answer with 404.
 */
export class AccountScope {
  readonly users: AccountUsers;
  readonly apiTokens: AccountApiTokens;
  readonly licences: AccountLicences;
  readonly devices: AccountDevices;
  readonly groups: AccountGroups;
  readonly events: AccountEvents;
  /** The activity log as the API lists it (device events and system changes). */
  readonly eventLog: AccountEventLog;
  readonly leases: AccountLeases;
  /** What the devices last reported over the control channel. */
  readonly deviceStatus: AccountDeviceStatus;
  /** The dashboard's aggregates. */
  readonly dashboard: AccountDashboard;
  /** The console's live reads (counts, newest events). */
  readonly live: AccountLive;
  /** The account's row id (`accounts.id`), not its public uuid. */
  readonly accountId: AccountRowId;

  /** `accountId` is an `accounts.id` the caller read from the store (a session, a user, a job row). */
  constructor(
    private readonly store: Store,
    accountId: number,
  ) {
    this.accountId = asAccountRowId(accountId);
    this.users = new AccountUsers(store, accountId);
    this.apiTokens = new AccountApiTokens(store, accountId);
    this.licences = new AccountLicences(store, accountId);
    this.devices = new AccountDevices(store, accountId);
    this.groups = new AccountGroups(store, accountId);
    this.events = new AccountEvents(store, accountId);
    this.leases = new AccountLeases(store, accountId);
    this.eventLog = new AccountEventLog(store, accountId);
    this.deviceStatus = new AccountDeviceStatus(store, accountId);
    this.dashboard = new AccountDashboard(store, accountId);
    this.live = new AccountLive(store, accountId);
  }

  /** The account row itself. */
  account(): AccountRow {
    const row = new Accounts(this.store).byId(this.accountId);
    if (!row) throw new Error(`account ${this.accountId} vanished`);
    return row;
  }

  updateAccount(patch: { name?: string; settings?: Record<string, unknown> }): void {
    new Accounts(this.store).update(this.accountId, patch);
  }

  /** One `BEGIN IMMEDIATE` transaction over this account's repositories. */
  write<T>(fn: () => T): T {
    return this.store.write(fn);
  }

  read<T>(fn: () => T): T {
    return this.store.read(fn);
  }

  savepoint<T>(fn: () => T): T {
    return this.store.savepoint(fn);
  }
}
