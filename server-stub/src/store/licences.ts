import type { AccountRowId } from '../ids.js';
import type { LicenceKind } from '../licensing/plans.js';
import type { LicenceFacts } from '../licensing/rules.js';
import type { Store } from './database.js';
import { chunks } from './events.js';

export interface VendorCodeRow {
  code: string;
  plan: LicenceKind;
  issued_at: number;
  redeemed_at: number | null;
  redeemed_by: number | null;
}

/** The vendor's table of issued codes (written by `fleet-server licences issue`). Not account-scoped. */
export class VendorCodes {
  constructor(private readonly store: Store) {}

  insertMany(codes: readonly { code: string; kind: LicenceKind }[], issuedAt: number): void {
    const insert = this.store.stmt('INSERT INTO vendor_codes (code, plan, issued_at) VALUES (?, ?, ?)');
    this.store.write(() => {
      for (const c of codes) insert.run(c.code, c.kind, issuedAt);
    });
  }

  get(code: string): VendorCodeRow | undefined {
    return this.store.stmt<VendorCodeRow>('SELECT * FROM vendor_codes WHERE code = ?').get(code);
  }

  markRedeemed(code: string, accountId: number, at: number): void {
    this.store.stmt('UPDATE vendor_codes SET redeemed_at = ?, redeemed_by = ? WHERE code = ?').run(at, accountId, code);
  }
}

interface LicenceRow {
  id: number;
  uuid: string;
  account_id: number;
  code: string;
  plan: LicenceKind;
  seats: number;
  issued_at: number;
  redeemed_at: number;
  activation_at: number | null;
  expires_at: number | null;
}

export interface LicenceRecord extends LicenceFacts {
  readonly code: string;
}

function toRecord(r: LicenceRow): LicenceRecord {
  return {
    id: r.id,
    uuid: r.uuid,
    kind: r.plan,
    seats: r.seats,
    code: r.code,
    issuedAt: r.issued_at,
    redeemedAt: r.redeemed_at,
    activationAt: r.activation_at,
    expiresAt: r.expires_at,
  };
}

/** Licences of one account. */
export class AccountLicences {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  /** A new random value whenever one of the account's licences is added, changed or removed (by any process); 0 before any. */
  version(): number {
    return this.store.stmt<{ version: number }>('SELECT version FROM licence_versions WHERE account_id = ?').get(this.accountId)?.version ?? 0;
  }

  all(): LicenceRecord[] {
    return this.store
      .stmt<LicenceRow>('SELECT * FROM licences WHERE account_id = ? ORDER BY id')
      .all(this.accountId)
      .map(toRecord);
  }

  byUuid(uuid: string): LicenceRecord | undefined {
    const row = this.store
      .stmt<LicenceRow>('SELECT * FROM licences WHERE account_id = ? AND uuid = ?')
      .get(this.accountId, uuid);
    return row && toRecord(row);
  }

  insert(l: {
    uuid: string;
    code: string;
    kind: LicenceKind;
    seats: number;
    issuedAt: number;
    redeemedAt: number;
  }): LicenceRecord {
    const row = this.store
      .stmt<{ id: number }>(
        `INSERT INTO licences (uuid, account_id, code, plan, seats, issued_at, redeemed_at)
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
      )
      .get(l.uuid, this.accountId, l.code, l.kind, l.seats, l.issuedAt, l.redeemedAt)!;
    return { ...l, id: row.id, activationAt: null, expiresAt: null };
  }

  /**
   * Sets the activation of many licences: on PostgreSQL one statement per BULK_CHUNK_ROWS licences,
   * on SQLite the prepared single-row update (microseconds each).
   */
  setActivations(rows: readonly { id: number; activationAt: number; expiresAt: number }[]): void {
    if (this.store.dialect !== 'postgres') {
      for (const r of rows) this.setActivation(r.id, r.activationAt, r.expiresAt);
      return;
    }
    const update = this.store.stmt(
      `UPDATE licences SET activation_at = u.activation_at, expires_at = u.expires_at
       FROM unnest(?::bigint[], ?::bigint[], ?::bigint[]) AS u(id, activation_at, expires_at)
       WHERE licences.id = u.id AND licences.account_id = ?`,
    );
    for (const chunk of chunks(rows)) {
      update.run(chunk.map((r) => r.id), chunk.map((r) => r.activationAt), chunk.map((r) => r.expiresAt), this.accountId);
    }
  }

  setActivation(id: number, activationAt: number, expiresAt: number): void {
    this.store
      .stmt('UPDATE licences SET activation_at = ?, expires_at = ? WHERE id = ? AND account_id = ?')
      .run(activationAt, expiresAt, id, this.accountId);
  }
}

/** Accounts that hold licences or leases: those the licence sweep has to look at. */
export function accountsWithLicencesOrLeases(store: Store): AccountRowId[] {
  return store
    .stmt<{ account_id: AccountRowId }>(
      'SELECT account_id FROM licences UNION SELECT account_id FROM leases ORDER BY account_id',
    )
    .all()
    .map((r) => r.account_id);
}
