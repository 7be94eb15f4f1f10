import { Buffer } from 'node:buffer';
import { X509Certificate } from 'node:crypto';
import { MAX_TRUST_ANCHORS, type TrustAnchor, trustAnchorsDigest } from '@router-fleet/protocol';
import type { NoticeBus } from '../channel/notices.js';
import type { Clock } from '../clock.js';
import { AppError } from '../errors.js';
import { adoptSharedFiles, changeSigningFiles, sharesFiles } from '../hosts/shared-files.js';
import { asAccountUuid } from '../ids.js';
import type { PacketService } from '../packets/service.js';
import type { ProfileService } from '../profiles/service.js';
import { Accounts } from '../store/accounts.js';
import { AccountPackets } from '../store/packets.js';
import {
  addVendorAnchors,
  type AnchorInfo,
  fingerprintOf,
  listAnchors,
  retireAnchor,
  rotateSigningPki,
  type SigningPki,
} from './signing.js';

/** Largest anchor set (PEM bytes plus JSON) sent to a router: the `trust-anchors` frame must stay below 64 KiB. */
export const MAX_ANCHOR_SET_BYTES = 48 * 1024;

/** What a device of one account must trust, and its `trustAnchorsDigest`. */
export interface TrustAnchorSet {
  readonly anchors: readonly TrustAnchor[];
  readonly digest: string;
}

function isCa(pem: string): boolean {
  try {
    return new X509Certificate(pem).ca;
  } catch {
    return false;
  }
}

/**
 * Every root a device must trust to verify what it will be sent: the server's signing roots
 * (profiles and packets the server builds; during a rotation the old and the new), the vendor's
 * roots (the firmware catalogue of Smart Updates) and the roots of its account's packet policy
 * (packets the account signs itself). Connection profiles carry this set; the control channel sends
 * `trust-anchors` when a device reports another digest.
 *
 * The server and vendor roots live in `DATA/signing/` (shared by every process and by the CLI,
 * which may change them while the server runs: `reload` re-reads them); the account roots in the
 * store. Sets are cached per account until a change is announced on the notice bus.
 */
export class TrustAnchorService {
  #server: readonly string[] = [];
  #vendor: readonly string[] = [];
  #base = '';
  readonly #cache = new Map<number, TrustAnchorSet>();

  constructor(
    private readonly dataDir: string,
    private readonly clock: Clock,
    private readonly packets: PacketService,
    private readonly profiles: ProfileService,
    private readonly notices: NoticeBus,
  ) {}

  async init(): Promise<void> {
    this.#take(await this.packets.pki());
  }

  #take(pki: SigningPki): boolean {
    const base = trustAnchorsDigest([...pki.trustAnchorsPem, '--vendor--', ...pki.vendorAnchorsPem]);
    const changed = base !== this.#base;
    this.#server = pki.trustAnchorsPem.filter(isCa);
    this.#vendor = pki.vendorAnchorsPem.filter(isCa);
    this.#base = base;
    if (changed) this.#cache.clear();
    return changed;
  }

  /** The set for devices of the account (row id). Needs `init()`. */
  forAccount(accountKey: number): TrustAnchorSet {
    let set = this.#cache.get(accountKey);
    if (set) return set;
    const seen = new Set<string>();
    const anchors: TrustAnchor[] = [];
    const add = (scope: TrustAnchor['scope'], pems: readonly string[]) => {
      for (const pem of pems) {
        let fp: string;
        try {
          fp = fingerprintOf(pem);
        } catch {
          continue;
        }
        if (seen.has(fp) || anchors.length >= MAX_TRUST_ANCHORS || !isCa(pem)) continue;
        seen.add(fp);
        anchors.push({ scope, certPem: pem });
      }
    };
    // Server roots first: a device must always be able to verify its own connection profile.
    add('server', this.#server);
    add('vendor', this.#vendor);
    add('account', new AccountPackets(this.packets.store, accountKey).policy().trustAnchors);
    set = { anchors, digest: trustAnchorsDigest(anchors.map((a) => a.certPem)) };
    this.#cache.set(accountKey, set);
    return set;
  }

  /** The PEMs of `forAccount` (for the connection profile's `trustAnchorsPem`). */
  pemsFor(accountKey: number): string[] {
    return this.forAccount(accountKey).anchors.map((a) => a.certPem);
  }

  /**
   * Checks an account's own roots before they are stored: CA certificates only, and room for them
   * beside the server's and vendor's roots (a device keeps at most 16).
   */
  checkAccountAnchors(pems: readonly string[]): void {
    for (const pem of pems) {
      if (!isCa(pem)) throw new AppError('SERVER_VALIDATION', 'trustAnchors must be CA certificates (basicConstraints CA:TRUE).');
    }
    const distinct = new Set([...this.#server, ...this.#vendor, ...pems].map((p) => fingerprintOf(p))).size;
    if (distinct > MAX_TRUST_ANCHORS) throw new AppError('SERVER_TOO_MANY_ANCHORS');
    // The whole set travels in one control-channel frame (64 KiB): keep well inside it.
    const bytes = [...this.#server, ...this.#vendor, ...pems].reduce((n, p) => n + Buffer.byteLength(p) + 64, 0);
    if (bytes > MAX_ANCHOR_SET_BYTES) {
      throw new AppError('SERVER_TOO_MANY_ANCHORS', `The anchors together take ${bytes} bytes; a router's set is limited to ${MAX_ANCHOR_SET_BYTES}.`);
    }
  }

  /** The account's policy roots changed: devices of the account get the new set. */
  accountChanged(accountKey: number): void {
    this.#cache.delete(accountKey);
    const accountUuid = new Accounts(this.packets.store).uuidOf(accountKey);
    if (accountUuid !== undefined) this.notices.publish({ kind: 'trust-anchors', accountUuid: asAccountUuid(accountUuid) });
  }

  /**
   * Re-reads the server and vendor roots from the data directory (another process, e.g. the CLI,
   * may have rotated or imported). When they changed, every account's devices get the new set
   * (`publish`) and the caches of this process are dropped. Returns whether they changed.
   */
  async reload(publish = true): Promise<boolean> {
    // Hosts on one PostgreSQL store: the cluster's signing files are the store's (another host may
    // have rotated); this data directory takes them first.
    if (sharesFiles(this.packets.store)) adoptSharedFiles(this.packets.store, this.dataDir, 'signing/');
    this.packets.reloadPki();
    const pki = await this.packets.pki();
    this.profiles.reload(pki);
    const changed = this.#take(pki);
    if (changed && publish) this.notices.publish({ kind: 'trust-anchors', accountUuid: null });
    return changed;
  }

  /** A change of the signing files, made to the cluster's current set and published (hosts/shared-files.ts). */
  #change<T>(change: () => Promise<T> | T): Promise<T> {
    return changeSigningFiles(this.packets.store, this.dataDir, change);
  }

  /** Drops the cached set of one account (another process announced a change). */
  forget(accountKey: number | null): void {
    if (accountKey === null) this.#cache.clear();
    else this.#cache.delete(accountKey);
  }

  list(): Promise<AnchorInfo[]> {
    return listAnchors(this.dataDir, new Date(this.clock.now()));
  }

  /** A new signing root and signer; the old root stays trusted (overlap) until `retire`. */
  async rotate(): Promise<AnchorInfo[]> {
    await this.#change(() => rotateSigningPki(this.dataDir, new Date(this.clock.now())));
    await this.reload();
    return this.list();
  }

  /** Ends an overlap: the root with this fingerprint is no longer trusted. */
  async retire(fingerprint: string): Promise<AnchorInfo[]> {
    await this.#change(() => retireAnchor(this.dataDir, fingerprint, new Date(this.clock.now())));
    await this.reload();
    return this.list();
  }

  /** Adds vendor roots (PEM text); returns how many were new. */
  async addVendor(pem: string): Promise<number> {
    const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    if (blocks.length === 0 || !blocks.every(isCa)) {
      throw new AppError('SERVER_VALIDATION', 'A vendor trust anchor must be a PEM CA certificate.');
    }
    const added = await this.#change(() => addVendorAnchors(this.dataDir, pem));
    await this.reload();
    return added;
  }
}
