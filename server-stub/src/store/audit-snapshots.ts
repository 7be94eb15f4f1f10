import type { Store } from './database.js';

/**
 * What the audit log records as the "before" and "after" of a change, per resource kind (the
 * `ResourceKind` a route names): an explicit column list per kind so that no secret (password
 * hashes, token hashes, device credentials, private keys) can ever reach the log. The API field
 * names are quoted: PostgreSQL folds an unquoted alias to lower case (`serialnumber`).
 */
const RESOURCE_SQL: Readonly<Record<string, string>> = {
  device: `SELECT d.uuid, d.serial_number AS "serialNumber", d.name, d.location, g.uuid AS "groupUuid", d.model, d.firmware,
      d.ping_interval AS "connectionPingInterval", d.pong_timeout AS "connectionPongTimeout",
      d.session_timeout AS "connectionSessionTimeout", d.custom_fields AS "customFields", d.latitude, d.longitude
    FROM devices d LEFT JOIN device_groups g ON g.id = d.group_id WHERE d.account_id = ? AND d.uuid = ?`,
  group: `SELECT g.uuid, g.name, g.description, v.vals AS "templateValues",
      (SELECT COUNT(*) FROM devices WHERE group_id = g.id) AS "deviceCount"
    FROM device_groups g LEFT JOIN group_template_values v ON v.group_id = g.id WHERE g.account_id = ? AND g.uuid = ?`,
  licence: `SELECT uuid, plan, seats, activation_at AS "activationAt", expires_at AS "expiresAt"
    FROM licences WHERE account_id = ? AND uuid = ?`,
  user: 'SELECT uuid, username, role, language, profile FROM users WHERE account_id = ? AND uuid = ?',
  apiToken: `SELECT t.uuid, t.name, u.uuid AS "userUuid", t.revoked_at AS "revokedAt"
    FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.account_id = ? AND t.uuid = ?`,
  template: `SELECT uuid, name, kind, file_name AS "fileName", description, body
    FROM configuration_templates WHERE account_id = ? AND uuid = ?`,
  certificate: `SELECT uuid, name, kind, subject, issuer, fingerprint_sha256 AS "fingerprintSha256", not_after AS "notAfter"
    FROM certificates WHERE account_id = ? AND uuid = ?`,
  packet: 'SELECT uuid, name, origin, sha256, size, signed FROM packets WHERE account_id = ? AND uuid = ?',
  job: 'SELECT uuid, name, state, target, options, abort_reason AS "abortReason" FROM jobs WHERE account_id = ? AND uuid = ?',
};

/** A stored state as the audit log shows it: API field names, JSON columns still as text. */
export type SnapshotRow = Record<string, unknown>;

/**
 * The audited state of one account's resources, read without secrets. Every statement carries
 * the account (`account_id = ?`, or `id = ?` for the account row itself).
 */
export class AccountAuditSnapshots {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  /** Whether `resource` reads anything for this kind (kinds without a snapshot are recorded as null). */
  static covers(kind: string): boolean {
    return Object.hasOwn(RESOURCE_SQL, kind);
  }

  /** The resource of `kind` with this uuid (undefined: no such resource, or a kind without a snapshot). */
  resource(kind: string, uuid: string): SnapshotRow | undefined {
    if (!AccountAuditSnapshots.covers(kind)) return undefined;
    return this.store.stmt<SnapshotRow>(RESOURCE_SQL[kind]!).get(this.accountId, uuid);
  }

  /** The account's uuid, name and settings (JSON text). */
  account(): SnapshotRow | undefined {
    return this.store.stmt<SnapshotRow>('SELECT uuid, name, settings FROM accounts WHERE id = ?').get(this.accountId);
  }

  /** The account's settings (JSON text). */
  settings(): string | undefined {
    return this.store.stmt<{ settings: string }>('SELECT settings FROM accounts WHERE id = ?').get(this.accountId)?.settings;
  }

  /** The account's packet policy (`trustAnchors` JSON text), if it set one. */
  packetPolicy(): SnapshotRow | undefined {
    return this.store
      .stmt<SnapshotRow>(
        'SELECT allow_unsigned AS "allowUnsigned", trust_anchors AS "trustAnchors" FROM packet_policies WHERE account_id = ?',
      )
      .get(this.accountId);
  }

  /** A user of the account by row id. */
  user(userId: number): SnapshotRow | undefined {
    return this.store
      .stmt<SnapshotRow>('SELECT uuid, username, role, language, profile FROM users WHERE account_id = ? AND id = ?')
      .get(this.accountId, userId);
  }
}
