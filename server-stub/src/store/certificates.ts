import type { Store } from './database.js';

export interface StoredCertificateRow {
  id: number;
  uuid: string;
  name: string;
  kind: 'certificate' | 'ca';
  pem: string;
  subject: string | null;
  issuer: string | null;
  serial: string | null;
  not_before: number | null;
  not_after: number | null;
  fingerprint_sha256: string | null;
  self_signed: number | null;
  created_at: number;
}

export interface NewStoredCertificate {
  uuid: string;
  name: string;
  kind: 'certificate' | 'ca';
  pem: string;
  subject: string;
  issuer: string;
  serial: string;
  notBefore: number;
  notAfter: number;
  fingerprintSha256: string;
  selfSigned: boolean;
}

const COLS = `id, uuid, name, kind, pem, subject, issuer, serial, not_before, not_after, fingerprint_sha256,
  self_signed, created_at`;

/** The certificate store of one account (certificates and CA certificates; never keys). */
export class AccountCertificateStore {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  byUuid(uuid: string): StoredCertificateRow | undefined {
    return this.store
      .stmt<StoredCertificateRow>(`SELECT ${COLS} FROM certificates WHERE account_id = ? AND uuid = ?`)
      .get(this.accountId, uuid);
  }

  byFingerprint(fp: string): StoredCertificateRow | undefined {
    return this.store
      .stmt<StoredCertificateRow>(`SELECT ${COLS} FROM certificates WHERE account_id = ? AND fingerprint_sha256 = ?`)
      .get(this.accountId, fp);
  }

  list(opts: { afterId: number; limit: number; kind?: 'certificate' | 'ca' }): StoredCertificateRow[] {
    return this.store
      .stmt<StoredCertificateRow>(
        `SELECT ${COLS} FROM certificates WHERE account_id = ? AND id > ? AND (? IS NULL OR kind = ?) ORDER BY id LIMIT ?`,
      )
      .all(this.accountId, opts.afterId, opts.kind ?? null, opts.kind ?? null, opts.limit);
  }

  /** Certificates whose validity ends before `until` (already expired ones included), soonest first. */
  expiringBefore(until: number, limit: number): StoredCertificateRow[] {
    return this.store
      .stmt<StoredCertificateRow>(
        `SELECT ${COLS} FROM certificates WHERE account_id = ? AND not_after IS NOT NULL AND not_after < ?
         ORDER BY not_after, id LIMIT ?`,
      )
      .all(this.accountId, until, limit);
  }

  /** Rows stored before metadata columns existed (migration 21). */
  withoutMetadata(): StoredCertificateRow[] {
    return this.store
      .stmt<StoredCertificateRow>(`SELECT ${COLS} FROM certificates WHERE account_id = ? AND fingerprint_sha256 IS NULL`)
      .all(this.accountId);
  }

  insert(c: NewStoredCertificate, now: number): void {
    this.store
      .stmt(
        `INSERT INTO certificates (uuid, account_id, name, kind, pem, subject, issuer, serial, not_before, not_after,
           fingerprint_sha256, self_signed, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(c.uuid, this.accountId, c.name, c.kind, c.pem, c.subject, c.issuer, c.serial, c.notBefore, c.notAfter,
        c.fingerprintSha256, c.selfSigned ? 1 : 0, now);
  }

  setMetadata(id: number, c: Omit<NewStoredCertificate, 'uuid' | 'name'>): void {
    this.store
      .stmt(
        `UPDATE certificates SET kind = ?, pem = ?, subject = ?, issuer = ?, serial = ?, not_before = ?, not_after = ?,
           fingerprint_sha256 = ?, self_signed = ? WHERE id = ? AND account_id = ?`,
      )
      .run(c.kind, c.pem, c.subject, c.issuer, c.serial, c.notBefore, c.notAfter, c.fingerprintSha256,
        c.selfSigned ? 1 : 0, id, this.accountId);
  }

  delete(id: number): boolean {
    return this.store.stmt('DELETE FROM certificates WHERE id = ? AND account_id = ?').run(id, this.accountId).changes > 0;
  }
}
