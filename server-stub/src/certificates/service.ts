import { Buffer } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import type { Clock } from '../clock.js';
import { AppError } from '../errors.js';
import type { LicensingService } from '../licensing/service.js';
import type { ComponentInput } from '../packets/service.js';
import { AccountCertificateStore, type StoredCertificateRow } from '../store/certificates.js';
import type { Store } from '../store/database.js';
import { isConflictOn } from '../store/errors.js';
import type { AccountScope } from '../store/scope.js';
import { parseUpload } from './parse.js';

export type CertificateStatus = 'valid' | 'expiring' | 'expired' | 'not-yet-valid';

/** Days before expiry from which a certificate shows as `expiring` (and the default of expiring-soon). */
export const EXPIRING_DAYS_DEFAULT = 30;
const DAY_MS = 86_400_000;

export interface UploadInput {
  name?: string;
  /** PEM text … */
  pem?: string;
  /** … or DER, base64. */
  der?: string;
  /** Optional check: `ca` refuses a certificate that is not a CA. */
  kind?: 'certificate' | 'ca';
}

/** A packet component that names a stored certificate instead of carrying its bytes. */
export type ComponentRef = Omit<ComponentInput, 'data' | 'text'> & { data?: string; text?: string; certificateUuid?: string };

/**
 * The certificate store (Basic and Pro): upload (PEM or DER, parsed and normalized to PEM), list,
 * get, delete, the ones expiring soon, and stored certificates as packet components.
 */
export class CertificateService {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly licensing: LicensingService,
  ) {}

  repo(scope: AccountScope): AccountCertificateStore {
    const repo = new AccountCertificateStore(this.store, scope.accountId);
    this.#backfill(repo);
    return repo;
  }

  /** Rows from before migration 21 (PEM only) get their metadata once, when first read. */
  #backfill(repo: AccountCertificateStore): void {
    const rows = repo.withoutMetadata();
    if (rows.length === 0) return;
    this.store.write(() => {
      for (const r of rows) {
        try {
          const p = parseUpload({ pem: r.pem });
          repo.setMetadata(r.id, { ...p, kind: p.isCa ? 'ca' : 'certificate' });
        } catch {
          repo.setMetadata(r.id, {
            kind: r.kind, pem: r.pem, subject: '(unparsable)', issuer: '', serial: '', notBefore: 0, notAfter: 0,
            fingerprintSha256: '', selfSigned: false,
          });
        }
      }
    });
  }

  upload(scope: AccountScope, input: UploadInput): StoredCertificateRow {
    let der: Buffer | undefined;
    if (input.der !== undefined) {
      const b64 = input.der.replace(/\s+/g, '');
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw new AppError('SERVER_CERTIFICATE_INVALID', '"der" must be base64.');
      der = Buffer.from(b64, 'base64');
    }
    if ((input.pem === undefined) === (der === undefined)) {
      throw new AppError('SERVER_VALIDATION', 'Give exactly one of "pem" (text) and "der" (base64).');
    }
    const p = parseUpload({ pem: input.pem, der });
    if (input.kind === 'ca' && !p.isCa) {
      throw new AppError('SERVER_CERTIFICATE_INVALID', 'The certificate is not a CA certificate (basicConstraints CA:FALSE).');
    }
    const uuid = randomUUID();
    const repo = this.repo(scope);
    scope.write(() => {
      if (repo.byFingerprint(p.fingerprintSha256)) throw new AppError('SERVER_CERTIFICATE_DUPLICATE');
      try {
        repo.insert(
          {
            uuid,
            name: (input.name ?? p.commonName ?? p.fingerprintSha256.slice(0, 16)).slice(0, 100),
            kind: p.isCa ? 'ca' : 'certificate',
            pem: p.pem,
            subject: p.subject,
            issuer: p.issuer,
            serial: p.serial,
            notBefore: p.notBefore,
            notAfter: p.notAfter,
            fingerprintSha256: p.fingerprintSha256,
            selfSigned: p.selfSigned,
          },
          this.clock.now(),
        );
      } catch (err) {
        if (isConflictOn(err, 'name')) throw new AppError('SERVER_NAME_TAKEN');
        throw err;
      }
    });
    return repo.byUuid(uuid)!;
  }

  delete(scope: AccountScope, uuid: string): void {
    const repo = this.repo(scope);
    scope.write(() => {
      const c = repo.byUuid(uuid);
      if (!c) throw new AppError('SERVER_NOT_FOUND');
      repo.delete(c.id);
    });
  }

  status(row: StoredCertificateRow, now = this.clock.now()): CertificateStatus {
    if (row.not_before !== null && now < row.not_before) return 'not-yet-valid';
    if (row.not_after !== null && now > row.not_after) return 'expired';
    if (row.not_after !== null && row.not_after - now <= EXPIRING_DAYS_DEFAULT * DAY_MS) return 'expiring';
    return 'valid';
  }

  expiringSoon(scope: AccountScope, days: number, limit: number): StoredCertificateRow[] {
    return this.repo(scope).expiringBefore(this.clock.now() + days * DAY_MS, limit);
  }

  /**
   * Packet components that name a stored certificate (`certificateUuid`) get its PEM as `text`.
   * Needs the certificate store (plan gate); the certificate must suit the component kind (a
   * `ca-certificate` component needs a CA) and be valid now. Other components pass unchanged.
   */
  resolveComponents<T extends ComponentRef>(scope: AccountScope, components: readonly T[]): ComponentInput[] {
    if (!components.some((c) => c.certificateUuid !== undefined)) return components as unknown as ComponentInput[];
    this.licensing.requireFeature(scope, 'certificateStore');
    const repo = this.repo(scope);
    return components.map((c) => {
      if (c.certificateUuid === undefined) return c as unknown as ComponentInput;
      const { certificateUuid, ...rest } = c;
      if (c.kind !== 'certificate' && c.kind !== 'ca-certificate') {
        throw new AppError('SERVER_VALIDATION', `${c.fileName}: certificateUuid only fits certificate components.`);
      }
      if (rest.data !== undefined || rest.text !== undefined) {
        throw new AppError('SERVER_VALIDATION', `${c.fileName}: give certificateUuid or the content, not both.`);
      }
      const row = repo.byUuid(certificateUuid);
      if (!row) throw new AppError('SERVER_VALIDATION', `Unknown certificate ${certificateUuid}.`);
      if (c.kind === 'ca-certificate' && row.kind !== 'ca') {
        throw new AppError('SERVER_CERTIFICATE_INVALID', `${c.fileName}: the stored certificate is not a CA certificate.`);
      }
      const st = this.status(row);
      if (st === 'expired' || st === 'not-yet-valid') {
        throw new AppError('SERVER_CERTIFICATE_INVALID', `${c.fileName}: the stored certificate is ${st}.`);
      }
      return { ...rest, text: row.pem } as ComponentInput;
    });
  }
}
