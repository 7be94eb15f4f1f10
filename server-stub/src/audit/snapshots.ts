import type { ResourceKind } from '../routes/route.js';
import { AccountAuditSnapshots } from '../store/audit-snapshots.js';
import type { Store } from '../store/database.js';

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

/**
 * The stored state of one resource of the account (null when it does not exist), as the audit log
 * records it before and after a change: store/audit-snapshots.ts reads it without secrets.
 */
export function resourceSnapshot(store: Store, accountId: number, kind: ResourceKind, uuid: string): unknown {
  if (!AccountAuditSnapshots.covers(kind)) return null;
  return parsed(new AccountAuditSnapshots(store, accountId).resource(kind, uuid));
}

function settingsOf(snapshots: AccountAuditSnapshots): Record<string, unknown> {
  const settings = snapshots.settings();
  return settings === undefined ? {} : (JSON.parse(settings) as Record<string, unknown>);
}

/** Routes that change a singleton of the account (no path parameter): how to read its state. */
const SINGLETONS: Readonly<Record<string, { kind: string; read: (store: Store, accountId: number, userId: number) => unknown }>> = {
  'PATCH /api/account': {
    kind: 'account',
    read: (store, accountId) => parsed(new AccountAuditSnapshots(store, accountId).account()),
  },
  'PUT /api/account/analytics-consent': {
    kind: 'account',
    read: (store, accountId) => ({ analyticsConsent: settingsOf(new AccountAuditSnapshots(store, accountId))['analyticsConsent'] ?? null }),
  },
  'PUT /api/account/smart-updates': {
    kind: 'account',
    read: (store, accountId) => ({ smartUpdates: settingsOf(new AccountAuditSnapshots(store, accountId))['smartUpdates'] ?? null }),
  },
  'PUT /api/packets/policy': {
    kind: 'packetPolicy',
    read: (store, accountId) => parsed(new AccountAuditSnapshots(store, accountId).packetPolicy()),
  },
  'PATCH /api/me': {
    kind: 'user',
    read: (store, accountId, userId) => parsed(new AccountAuditSnapshots(store, accountId).user(userId)),
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
