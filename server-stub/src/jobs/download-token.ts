import { Buffer } from 'node:buffer';
import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Download credentials of job offers: `<payload>.<mac>`, both base64url, where payload is
 * `{e: executionId, d: deviceUuid, x: expiresAt}` and mac is HMAC-SHA256 under a key derived from
 * the data directory's server key. Stateless, so any worker of a cluster can check it; bound to
 * one execution and one device; the expiry is compared with the injected clock.
 */
export interface DownloadClaims {
  readonly executionId: string;
  readonly deviceUuid: string;
  readonly expiresAt: number;
}

export type TokenCheck =
  | { ok: true; claims: DownloadClaims }
  | { ok: false; reason: 'malformed' | 'bad-signature' | 'expired' };

export class DownloadTokens {
  readonly #key: Buffer;

  constructor(serverKey: Buffer) {
    this.#key = createHmac('sha256', serverKey).update('router-fleet download token v1').digest();
  }

  issue(claims: DownloadClaims): string {
    const payload = Buffer.from(
      JSON.stringify({ e: claims.executionId, d: claims.deviceUuid, x: claims.expiresAt }),
      'utf8',
    ).toString('base64url');
    return `${payload}.${this.#mac(payload)}`;
  }

  check(token: string, now: number): TokenCheck {
    const dot = token.indexOf('.');
    if (dot <= 0 || token.length > 1024) return { ok: false, reason: 'malformed' };
    const payload = token.slice(0, dot);
    const mac = Buffer.from(token.slice(dot + 1), 'base64url');
    const want = Buffer.from(this.#mac(payload), 'base64url');
    if (mac.length !== want.length || !timingSafeEqual(mac, want)) return { ok: false, reason: 'bad-signature' };
    let claims: { e?: unknown; d?: unknown; x?: unknown };
    try {
      claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as typeof claims;
    } catch {
      // Not an error of ours: the verdict tells the caller, which refuses the download.
      return { ok: false, reason: 'malformed' };
    }
    if (typeof claims.e !== 'string' || typeof claims.d !== 'string' || typeof claims.x !== 'number') {
      return { ok: false, reason: 'malformed' };
    }
    if (claims.x <= now) return { ok: false, reason: 'expired' };
    return { ok: true, claims: { executionId: claims.e, deviceUuid: claims.d, expiresAt: claims.x } };
  }

  #mac(payload: string): string {
    return createHmac('sha256', this.#key).update(payload).digest('base64url');
  }
}
