import { dialects, type Store } from './database.js';

export type PacketOrigin = 'upload' | 'build' | 'vendor';

export interface PacketRow {
  id: number;
  uuid: string;
  account_id: number | null;
  origin: PacketOrigin;
  name: string;
  sha256: string;
  size: number;
  signed: number;
  /** JSON `{subject, fingerprintSha256, notAfter}` or null. */
  signer: string | null;
  /** JSON of the parsed MANIFEST plus each section's verified size and SHA-256. */
  manifest: string;
  model: string | null;
  version: string | null;
  created_at: number;
}

export interface NewPacket {
  uuid: string;
  origin: PacketOrigin;
  name: string;
  sha256: string;
  size: number;
  signed: boolean;
  signer: string | null;
  manifest: string;
  model?: string | null;
  version?: string | null;
}

export interface PacketPolicy {
  allowUnsigned: boolean;
  trustAnchors: string[];
}

/** Packets of one account (uploaded or built). Every statement carries `account_id = ?`. */
export class AccountPackets {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  byUuid(uuid: string): PacketRow | undefined {
    return this.store
      .stmt<PacketRow>('SELECT * FROM packets WHERE account_id = ? AND uuid = ?')
      .get(this.accountId, uuid);
  }

  list(opts: { afterId: number; limit: number }): PacketRow[] {
    return this.store
      .stmt<PacketRow>('SELECT * FROM packets WHERE account_id = ? AND id > ? ORDER BY id LIMIT ?')
      .all(this.accountId, opts.afterId, opts.limit);
  }

  insert(p: NewPacket, now: number): number {
    return Number(
      this.store
        .stmt<{ id: number }>(
          `INSERT INTO packets (uuid, account_id, origin, name, sha256, size, signed, signer, manifest, model, version, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
        )
        .get(p.uuid, this.accountId, p.origin, p.name, p.sha256, p.size, p.signed ? 1 : 0, p.signer, p.manifest,
          p.model ?? null, p.version ?? null, now)!.id,
    );
  }

  delete(id: number): boolean {
    return this.store.stmt('DELETE FROM packets WHERE id = ? AND account_id = ?').run(id, this.accountId).changes > 0;
  }

  /** Whether a running or paused job, or an unfinished execution, still installs packet `id`. */
  inUse(id: number): boolean {
    return (
      this.store
        .stmt(
          `SELECT 1 FROM jobs WHERE packet_id = ? AND state IN ('running', 'paused')
           UNION ALL SELECT 1 FROM job_executions WHERE packet_id = ? AND finished_at IS NULL LIMIT 1`,
        )
        .get(id, id) !== undefined
    );
  }

  /**
   * Lets packet `id` go from the job history before it is deleted: jobs keep their row without it,
   * finished executions of it are deleted (their `packet_id` references the packet with no
   * ON DELETE action, so they would block the delete). Call `inUse` first, in the same transaction.
   */
  detachFromFinishedJobs(id: number): void {
    this.store.stmt('UPDATE jobs SET packet_id = NULL WHERE packet_id = ?').run(id);
    this.store.stmt('DELETE FROM job_executions WHERE packet_id = ? AND finished_at IS NOT NULL').run(id);
  }

  policy(): PacketPolicy {
    const row = this.store
      .stmt<{ allow_unsigned: number; trust_anchors: string }>(
        'SELECT allow_unsigned, trust_anchors FROM packet_policies WHERE account_id = ?',
      )
      .get(this.accountId);
    return { allowUnsigned: row?.allow_unsigned === 1, trustAnchors: row ? (JSON.parse(row.trust_anchors) as string[]) : [] };
  }

  setPolicy(p: PacketPolicy): void {
    this.store
      .stmt(
        `INSERT INTO packet_policies (account_id, allow_unsigned, trust_anchors) VALUES (?, ?, ?)
         ON CONFLICT (account_id) DO UPDATE SET allow_unsigned = excluded.allow_unsigned, trust_anchors = excluded.trust_anchors`,
      )
      .run(this.accountId, p.allowUnsigned ? 1 : 0, JSON.stringify(p.trustAnchors));
  }
}

/** The vendor firmware catalogue: packets without an account, one row per (model, version). */
export class FirmwareCatalogue {
  constructor(private readonly store: Store) {}

  insert(p: NewPacket & { model: string; version: string }, now: number): boolean {
    return (
      this.store
        .stmt(
          dialects({
            sqlite: `INSERT OR IGNORE INTO packets (uuid, account_id, origin, name, sha256, size, signed, signer, manifest, model, version, created_at)
                     VALUES (?, NULL, 'vendor', ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
            postgres: `INSERT INTO packets (uuid, account_id, origin, name, sha256, size, signed, signer, manifest, model, version, created_at)
                       VALUES (?, NULL, 'vendor', ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
          }),
        )
        .run(p.uuid, p.name, p.sha256, p.size, p.signed ? 1 : 0, p.signer, p.manifest, p.model, p.version, now)
        .changes > 0
    );
  }

  list(opts: { model?: string; afterId: number; limit: number }): PacketRow[] {
    return this.store
      .stmt<PacketRow>(
        `SELECT * FROM packets WHERE origin = 'vendor' AND (? IS NULL OR model = ?) AND id > ? ORDER BY id LIMIT ?`,
      )
      .all(opts.model ?? null, opts.model ?? null, opts.afterId, opts.limit);
  }

  all(): PacketRow[] {
    return this.store.stmt<PacketRow>(`SELECT * FROM packets WHERE origin = 'vendor' ORDER BY model, id`).all();
  }

  byModelVersion(model: string, version: string): PacketRow | undefined {
    return this.store
      .stmt<PacketRow>(`SELECT * FROM packets WHERE origin = 'vendor' AND model = ? AND version = ?`)
      .get(model, version);
  }

  hasVersion(version: string): boolean {
    return this.store.stmt(`SELECT 1 FROM packets WHERE origin = 'vendor' AND version = ?`).get(version) !== undefined;
  }
}

export function packetById(store: Store, id: number): PacketRow | undefined {
  return store.stmt<PacketRow>('SELECT * FROM packets WHERE id = ?').get(id);
}

export function sha256InUse(store: Store, sha256: string): boolean {
  return store.stmt('SELECT 1 FROM packets WHERE sha256 = ? LIMIT 1').get(sha256) !== undefined;
}
