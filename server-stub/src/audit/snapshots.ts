import type { ResourceKind } from '../routes/route.js';
import type { Store } from '../store/database.js';

/**
 * What the audit log records as the "before" and "after" of a change: the stored state of the
 * resource a route names, read with an explicit column list per kind so that no secret (password
 * hashes, token hashes, device credentials, private keys) can ever reach the log.
 */
const RESOURCE_SQL: Partial<Record<ResourceKind, string>> = {
  device: `SELECT d.uuid, d.serial_number AS serialNumber, d.name, d.location, g.uuid AS groupUuid, d.model, d.firmware,
      d.ping_interval AS connectionPingInterval, d.pong_timeout AS connectionPongTimeout,
      d.session_timeout AS connectionSessionTimeout, d.custom_fields AS customFields, d.latitude, d.longitude
    FROM devices d LEFT JOIN device_groups g ON g.id = d.group_id WHERE d.account_id = ? AND d.uuid = ?`,
  group: `SELECT g.uuid, g.name, g.description, v.vals AS templateValues,
      (SELECT COUNT(*) FROM devices WHERE group_id = g.id) AS deviceCount
    FROM device_groups g LEFT JOIN group_template_values v ON v.group_id = g.id WHERE g.account_id = ? AND g.uuid = ?`,
  licence: `SELECT uuid, plan, seats, activation_at AS activationAt, expires_at AS expiresAt
    FROM licences WHERE account_id = ? AND uuid = ?`,
  user: 'SELECT uuid, username, role, language, profile FROM users WHERE account_id = ? AND uuid = ?',
  apiToken: `SELECT t.uuid, t.name, u.uuid AS userUuid, t.revoked_at AS revokedAt
    FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.account_id = ? AND t.uuid = ?`,
  template: `SELECT uuid, name, kind, file_name AS fileName, description, body
    FROM configuration_templates WHERE account_id = ? AND uuid = ?`,
  certificate: `SELECT uuid, name, kind, subject, issuer, fingerprint_sha256 AS fingerprintSha256, not_after AS notAfter
    FROM certificates WHERE account_id = ? AND uuid = ?`,
  packet: 'SELECT uuid, name, origin, sha256, size, signed FROM packets WHERE account_id = ? AND uuid = ?',
  job: 'SELECT uuid, name, state, target, options, abort_reason AS abortReason FROM jobs WHERE account_id = ? AND uuid = ?',
};

/** JSON text columns that are shown parsed. */
const JSON_COLUMNS = new Set(['customFields', 'templateValues', 'profile', 'target', 'options']);

function parsed(row: Record<string, unknown> | undefined): Record<string, unknown> | null {
  if (!row) return null;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) {
    if (JSON_COLUMNS.has(k) && typeof v === 'string') {
      try {
        out[k] = JSON.parse(v);
        continue;
      } catch {
        // stored as text
      }
    }
    out[k] = v;
  }
  return out;
}

/** The stored state of one resource of the account (null when it does not exist). */
export function resourceSnapshot(store: Store, accountId: number, kind: ResourceKind, uuid: string): unknown {
  const sql = RESOURCE_SQL[kind];
  if (!sql) return null;
  return parsed(store.stmt<Record<string, unknown>>(sql).get(accountId, uuid));
}

/** Routes that change a singleton of the account (no path parameter): how to read its state. */
const SINGLETONS: Readonly<Record<string, { kind: string; read: (store: Store, accountId: number, userId: number) => unknown }>> = {
  'PATCH /api/account': {
    kind: 'account',
    read: (store, accountId) =>
      parsed(store.stmt<Record<string, unknown>>('SELECT uuid, name, settings FROM accounts WHERE id = ?').get(accountId)),
  },
  'PUT /api/account/analytics-consent': {
    kind: 'account',
    read: (store, accountId) => {
      const row = store.stmt<{ settings: string }>('SELECT settings FROM accounts WHERE id = ?').get(accountId);
      const s = row ? (JSON.parse(row.settings) as Record<string, unknown>) : {};
      return { analyticsConsent: s['analyticsConsent'] ?? null };
    },
  },
  'PUT /api/account/smart-updates': {
    kind: 'account',
    read: (store, accountId) => {
      const row = store.stmt<{ settings: string }>('SELECT settings FROM accounts WHERE id = ?').get(accountId);
      const s = row ? (JSON.parse(row.settings) as Record<string, unknown>) : {};
      return { smartUpdates: s['smartUpdates'] ?? null };
    },
  },
  'PUT /api/packets/policy': {
    kind: 'packetPolicy',
    read: (store, accountId) =>
      parsed(
        store
          .stmt<Record<string, unknown>>(
            'SELECT allow_unsigned AS allowUnsigned, trust_anchors AS trustAnchors FROM packet_policies WHERE account_id = ?',
          )
          .get(accountId),
      ),
  },
  'PATCH /api/me': {
    kind: 'user',
    read: (store, accountId, userId) =>
      parsed(
        store
          .stmt<Record<string, unknown>>('SELECT uuid, username, role, language, profile FROM users WHERE account_id = ? AND id = ?')
          .get(accountId, userId),
      ),
  },
};

export function singletonOf(routeKey: string) {
  return SINGLETONS[routeKey];
}

/** Keys whose values never enter the audit log. */
const SECRET_KEY = /pass(word)?|secret|token|credential|private|^key$|Key$/i;
/** Longest JSON kept for one of request / before / after; longer values are replaced by a note. */
export const MAX_AUDIT_JSON = 16_384;

/** A copy of `value` with secret-looking keys redacted and PEM private keys blanked. */
export function redact(value: unknown, depth = 0): unknown {
  if (depth > 8) return '[nested]';
  if (typeof value === 'string') {
    return /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(value) ? '[redacted]' : value;
  }
  if (Array.isArray(value)) return value.slice(0, 200).map((v) => redact(v, depth + 1));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = SECRET_KEY.test(k) ? '[redacted]' : redact(v, depth + 1);
    return out;
  }
  return value;
}

/** Redacted and bounded: what is stored in the log. */
export function forLog(value: unknown): unknown {
  if (value === undefined || value === null) return value ?? null;
  const r = redact(value);
  const text = JSON.stringify(r);
  if (text !== undefined && text.length > MAX_AUDIT_JSON) return { truncated: true, bytes: text.length };
  return r;
}
