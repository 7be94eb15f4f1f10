import { Buffer } from 'node:buffer';
import { DownloadSlots } from './download-slots.js';
import { randomUUID, X509Certificate } from 'node:crypto';
import { copyFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type FileType,
  isNewerVersion,
  type PacketFileInput,
  parseVersion,
  ProtocolError,
  type ReadPacketResult,
  readPacket,
  readPacketHead,
  writePacketToFile,
} from '@router-fleet/protocol';
import type { Clock } from '../clock.js';
import { AppError } from '../errors.js';
import type { Store } from '../store/database.js';
import { AccountPackets, FirmwareCatalogue, type NewPacket, type PacketRow, sha256InUse } from '../store/packets.js';
import type { AccountScope } from '../store/scope.js';
import { addVendorAnchors, loadOrCreateSigningPki, type SigningPki } from '../pki/signing.js';
import { changeSigningFiles, sharesFiles } from '../hosts/shared-files.js';
import { PacketBlobs } from '../store/packet-blobs.js';
import { PacketStorage } from './storage.js';

/** Limits of packet handling (see the defaults below; tests and cluster mode may override them). */
export interface PacketOptions {
  /** Largest uploaded or built packet, bytes. Default 512 MiB. */
  readonly maxPacketBytes: number;
  /** Largest JSON body of `POST /api/packets/build` (components inline, base64), bytes. Default 64 MiB. */
  readonly maxBuildBodyBytes: number;
  /** Packet downloads served at once by this process; more wait in a queue. Default 256. */
  readonly maxConcurrentDownloads: number;
  /**
   * Downloads that may wait for a free slot (first in, first out) instead of being refused: a
   * fleet offered one job at once downloads at the server's pace, not in waves of retries. Beyond
   * it, or after `downloadQueueWaitSec` in the queue, 503 + Retry-After. Default 4,096.
   */
  readonly maxQueuedDownloads: number;
  /** Longest wait in the download queue, seconds. Default 30. */
  readonly downloadQueueWaitSec: number;
  /** Retry-After sent with a refused download, seconds. Default 5. */
  readonly downloadRetryAfterSec: number;
  /** Lifetime of a download credential (capped by the execution's deadline), seconds. Default 3600. */
  readonly downloadTokenTtlSec: number;
}

export const DEFAULT_PACKET_OPTIONS: PacketOptions = Object.freeze({
  maxPacketBytes: 512 * 1024 * 1024,
  maxBuildBodyBytes: 64 * 1024 * 1024,
  maxConcurrentDownloads: 256,
  maxQueuedDownloads: 4096,
  downloadQueueWaitSec: 30,
  downloadRetryAfterSec: 5,
  downloadTokenTtlSec: 3600,
});

/** The kinds of component a packet can be built from, and their FILETYPE. */
export const COMPONENT_KINDS = {
  firmware: 'FirmwareFull',
  'firmware-incremental': 'FirmwareIncremental',
  'configuration-profile': 'ConfigurationProfile',
  'ascii-configuration': 'AsciiConfiguration',
  certificate: 'Certificate',
  'ca-certificate': 'CaCertificate',
  container: 'Container',
  'container-configuration': 'ContainerConfiguration',
} as const satisfies Record<string, FileType>;
export type ComponentKind = keyof typeof COMPONENT_KINDS;

export interface ComponentInput {
  kind: ComponentKind;
  /** Member name in the packet (a safe relative path). */
  fileName: string;
  /** Content as base64 … */
  data?: string;
  /** … or as UTF-8 text (configuration, PEM). */
  text?: string;
  version?: string;
  requiredSw?: string;
  description?: string;
}

export interface BuildInput {
  name: string;
  description?: string;
  targetModels?: string[];
  components: ComponentInput[];
}

export interface VendorImportReport {
  imported: { file: string; model: string; version: string; sha256: string }[];
  skipped: { file: string; code: string; message: string }[];
  /** Vendor roots given on import that verified a packet and are now trusted (and sent to routers). */
  vendorAnchorsAdded?: number;
}

/** The manifest as stored (and shown by inspect): header, then each verified section. */
export interface StoredManifest {
  header: ReadPacketResult['manifest']['header'] | null;
  sections: {
    fileName: string;
    fileType: string;
    size: number;
    sha256: string;
    version?: string;
    requiredSw?: string;
    description?: string;
  }[];
}

function packetInvalid(err: ProtocolError): AppError {
  return new AppError('SERVER_PACKET_INVALID', `${err.code}: ${err.message}`, {
    details: { code: err.code, message: err.message, entry: err.entry ?? null },
  });
}

function storedManifest(r: ReadPacketResult): string {
  const m: StoredManifest = {
    header: r.manifest.header ?? null,
    sections: r.sections.map((s) => ({
      fileName: s.fileName,
      fileType: s.fileType,
      size: s.size,
      sha256: s.sha256,
      ...(s.version === undefined ? {} : { version: s.version }),
      ...(s.requiredSw === undefined ? {} : { requiredSw: s.requiredSw }),
      ...(s.description === undefined ? {} : { description: s.description }),
    })),
  };
  return JSON.stringify(m);
}

function signerJson(r: ReadPacketResult): string | null {
  if (!r.signed || !r.signer) return null;
  return JSON.stringify({
    subject: r.signer.subject,
    fingerprintSha256: r.signer.fingerprintSha256,
    notAfter: r.signer.notAfter.toISOString(),
  });
}

/** The firmware section of a vendor packet: exactly one FirmwareFull/FirmwareIncremental with a VERSION by protocol's version rule. */
export function firmwareVersionOf(manifest: StoredManifest): string | undefined {
  const fw = manifest.sections.filter((s) => s.fileType === 'FirmwareFull' || s.fileType === 'FirmwareIncremental');
  if (fw.length !== 1) return undefined;
  const v = fw[0]!.version;
  return v !== undefined && parseVersion(v) !== undefined ? v : undefined;
}

/**
 * Update packets of accounts and the vendor firmware catalogue: upload (streamed to disk, then
 * verified with the protocol's reader under the account's signature policy), build from components
 * (signed with the server's signing key), content-addressed storage, delete (refused while an
 * active job uses the packet).
 */
export class PacketService {
  readonly storage: PacketStorage;
  readonly catalogue: FirmwareCatalogue;
  /** Packet download slots of this process (the concurrency cap is per process). */
  readonly downloads: DownloadSlots;
  #pki: Promise<SigningPki> | undefined;

  constructor(
    readonly store: Store,
    private readonly clock: Clock,
    private readonly dataDir: string,
    readonly options: PacketOptions,
  ) {
    // Hosts on one PostgreSQL store share no file system: packet bytes are kept in the store too.
    this.storage = new PacketStorage(dataDir, sharesFiles(store) ? new PacketBlobs(store) : undefined);
    this.catalogue = new FirmwareCatalogue(store);
    this.downloads = new DownloadSlots(options.maxConcurrentDownloads, options.maxQueuedDownloads, options.downloadQueueWaitSec * 1000);
  }

  /** The account's packets (bound to its id, like every repository of AccountScope). */
  repo(scope: AccountScope): AccountPackets {
    return new AccountPackets(this.store, scope.accountId);
  }

  /** The signing PKI (created in the data directory on first use). */
  pki(): Promise<SigningPki> {
    this.#pki ??= loadOrCreateSigningPki(this.dataDir, new Date(this.clock.now()));
    this.#pki.catch(() => {
      this.#pki = undefined;
    });
    return this.#pki;
  }

  /** Forgets the cached PKI (after a rotation on disk). */
  reloadPki(): void {
    this.#pki = undefined;
  }

  async #verify(path: string, opts: { requireSignature: boolean; anchors: readonly string[] }): Promise<ReadPacketResult> {
    try {
      return await readPacket(path, {
        requireSignature: opts.requireSignature,
        trustAnchors: opts.anchors,
        at: new Date(this.clock.now()),
        limits: { maxTotalSize: this.options.maxPacketBytes },
      });
    } catch (err) {
      if (err instanceof ProtocolError) throw packetInvalid(err);
      throw err;
    }
  }

  async #accountAnchors(scope: AccountScope): Promise<{ requireSignature: boolean; anchors: string[] }> {
    const pki = await this.pki();
    const policy = this.repo(scope).policy();
    return {
      requireSignature: !policy.allowUnsigned,
      anchors: [...pki.trustAnchorsPem, ...pki.vendorAnchorsPem, ...policy.trustAnchors],
    };
  }

  /**
   * The exact MANIFEST of a stored packet of the account (its first member, as signed), read from
   * the packet file: only the head is read, however large the payload. The packet was verified
   * when it was stored; here only the MANIFEST's own integrity is checked again.
   */
  async manifestText(scope: AccountScope, uuid: string): Promise<string> {
    const p = this.repo(scope).byUuid(uuid);
    if (!p) throw new AppError('SERVER_NOT_FOUND');
    try {
      const head = await readPacketHead(await this.storage.local(p.sha256), {
        requireSignature: false,
        allowUnknownFileTypes: true,
        limits: { maxTotalSize: this.options.maxPacketBytes },
      });
      return head.manifestBytes.toString('utf8');
    } catch (err) {
      if (err instanceof ProtocolError) throw packetInvalid(err);
      throw err;
    }
  }

  /** Receives a packet body, verifies it and stores it for the account. */
  async upload(scope: AccountScope, body: NodeJS.ReadableStream, name: string | undefined): Promise<PacketRow> {
    const received = await this.storage.receive(body, this.options.maxPacketBytes);
    try {
      const result = await this.#verify(received.tmpPath, await this.#accountAnchors(scope));
      await this.storage.commit(received.tmpPath, result.sha256);
      return await this.#insertOrRemove(scope, result, 'upload', name ?? result.manifest.header?.description ?? result.sections[0]!.fileName);
    } finally {
      await this.storage.discard(received.tmpPath);
    }
  }

  /** Builds a signed packet from components given in the request. */
  async build(scope: AccountScope, input: BuildInput): Promise<PacketRow> {
    const pki = await this.pki();
    const files: PacketFileInput[] = input.components.map((c) => {
      const hasData = c.data !== undefined;
      if (hasData === (c.text !== undefined)) {
        throw new AppError('SERVER_VALIDATION', `${c.fileName}: give exactly one of "data" (base64) and "text".`);
      }
      const bytes = hasData ? Buffer.from(c.data!, 'base64') : Buffer.from(c.text!, 'utf8');
      if (bytes.length === 0) throw new AppError('SERVER_VALIDATION', `${c.fileName}: the component is empty.`);
      if (c.kind === 'certificate' || c.kind === 'ca-certificate') checkPem(c.fileName, bytes, c.kind);
      return {
        name: c.fileName,
        fileType: COMPONENT_KINDS[c.kind],
        source: { data: bytes },
        ...(c.version === undefined ? {} : { version: c.version }),
        ...(c.requiredSw === undefined ? {} : { requiredSw: c.requiredSw }),
        ...(c.description === undefined ? {} : { description: c.description }),
      };
    });
    const tmp = this.storage.tempPath();
    try {
      try {
        await writePacketToFile(tmp, {
          files,
          signer: pki.signer,
          createdAt: new Date(this.clock.now()),
          ...(input.targetModels ? { targetModels: input.targetModels } : {}),
          ...(input.description === undefined ? {} : { description: input.description }),
        });
      } catch (err) {
        if (err instanceof ProtocolError) throw packetInvalid(err);
        throw err;
      }
      const result = await this.#verify(tmp, { requireSignature: true, anchors: pki.trustAnchorsPem });
      await this.storage.commit(tmp, result.sha256);
      return await this.#insertOrRemove(scope, result, 'build', input.name);
    } finally {
      await this.storage.discard(tmp);
    }
  }

  /** Inserts the row; when that fails (a full disk), the stored file goes too unless another row uses it. */
  async #insertOrRemove(
    scope: AccountScope,
    result: ReadPacketResult,
    origin: 'upload' | 'build',
    name: string,
  ): Promise<PacketRow> {
    try {
      return this.#insert(scope, result, origin, name);
    } catch (err) {
      if (!sha256InUse(this.store, result.sha256)) await this.storage.remove(result.sha256);
      throw err;
    }
  }

  #insert(scope: AccountScope, result: ReadPacketResult, origin: 'upload' | 'build', name: string): PacketRow {
    const uuid = randomUUID();
    const row: NewPacket = {
      uuid,
      origin,
      name: name.slice(0, 200),
      sha256: result.sha256,
      size: result.size,
      signed: result.signed,
      signer: signerJson(result),
      manifest: storedManifest(result),
    };
    scope.write(() => this.repo(scope).insert(row, this.clock.now()));
    return this.repo(scope).byUuid(uuid)!;
  }

  /** Deletes an account's packet; refused (SERVER_PACKET_IN_USE) while a running or paused job uses it. */
  async delete(scope: AccountScope, uuid: string): Promise<void> {
    const sha = scope.write(() => {
      const p = this.repo(scope).byUuid(uuid);
      if (!p) throw new AppError('SERVER_NOT_FOUND');
      if (this.repo(scope).inUse(p.id)) throw new AppError('SERVER_PACKET_IN_USE');
      // Finished jobs stay listed without their packet; their executions of it go (see detachFromFinishedJobs).
      this.repo(scope).detachFromFinishedJobs(p.id);
      this.repo(scope).delete(p.id);
      return p.sha256;
    });
    if (!sha256InUse(this.store, sha)) await this.storage.remove(sha);
  }

  /**
   * Imports vendor firmware packets (`*.tar` in `dir`) into the catalogue shared by every account.
   * Each must be signed by a vendor anchor (DATA/signing/vendor-anchors.pem, or `trustAnchorsPem`)
   * or the server's own, have TARGET_MODELS and exactly one firmware section with a VERSION by protocol's version rule.
   * One catalogue row per (model, version); an existing (model, version) is skipped. Roots given in
   * `trustAnchorsPem` that verified an imported packet are stored as vendor anchors: routers must
   * trust them to install that firmware, and the connection profiles and `trust-anchors` messages
   * carry them from then on (`vendorAnchorsAdded`).
   */
  async importVendorFirmware(dir: string, opts: { trustAnchorsPem?: readonly string[] } = {}): Promise<VendorImportReport> {
    const pki = await this.pki();
    const anchors = [...pki.vendorAnchorsPem, ...pki.trustAnchorsPem, ...(opts.trustAnchorsPem ?? [])];
    const report: VendorImportReport = { imported: [], skipped: [] };
    const given = opts.trustAnchorsPem ?? [];
    const known = new Set([...pki.vendorAnchorsPem, ...pki.trustAnchorsPem].map((p) => p.trim()));
    const usedGiven = new Set<string>();
    const names = (await readdir(dir)).filter((n) => n.endsWith('.tar')).sort();
    for (const file of names) {
      const path = join(dir, file);
      let result: ReadPacketResult;
      try {
        result = await this.#verify(path, { requireSignature: true, anchors });
        // Which given root vouched for it: the one that verifies alone.
        if (given.length > 0) {
          for (const g of given.filter((x) => !known.has(x.trim()))) {
            if (await this.#verify(path, { requireSignature: true, anchors: [g] }).then(() => true, () => false)) usedGiven.add(g);
          }
        }
      } catch (err) {
        const details = (err as AppError).details as { code?: string } | undefined;
        report.skipped.push({ file, code: details?.code ?? 'SERVER_PACKET_INVALID', message: (err as Error).message });
        continue;
      }
      const manifest = JSON.parse(storedManifest(result)) as StoredManifest;
      const version = firmwareVersionOf(manifest);
      const models = result.manifest.header?.targetModels ?? [];
      if (!version || models.length === 0) {
        report.skipped.push({
          file,
          code: 'SERVER_PACKET_INVALID',
          message: 'A vendor firmware packet needs TARGET_MODELS and one firmware section with a VERSION (MAJOR[.MINOR[.PATCH]], e.g. 3.1.0).',
        });
        continue;
      }
      if (!this.storage.has(result.sha256)) {
        const tmp = this.storage.tempPath();
        await copyFile(path, tmp);
        await this.storage.commit(tmp, result.sha256);
      }
      const now = this.clock.now();
      for (const model of models) {
        const added = this.store.write(() =>
          this.catalogue.insert(
            {
              uuid: randomUUID(),
              origin: 'vendor',
              name: file,
              sha256: result.sha256,
              size: result.size,
              signed: result.signed,
              signer: signerJson(result),
              manifest: JSON.stringify(manifest),
              model,
              version,
            },
            now,
          ),
        );
        if (added) report.imported.push({ file, model, version, sha256: result.sha256 });
        else report.skipped.push({ file, code: 'SERVER_NAME_TAKEN', message: `${model} ${version} is already in the catalogue.` });
      }
    }
    if (usedGiven.size > 0) {
      const pem = [...usedGiven].map((p) => `${p.trim()}\n`).join('');
      report.vendorAnchorsAdded = await changeSigningFiles(this.store, this.dataDir, () => addVendorAnchors(this.dataDir, pem));
      this.reloadPki();
    }
    return report;
  }

  /** The newest catalogue version for a model (semver precedence), optionally only above `than`. */
  latestFirmware(model: string): PacketRow | undefined {
    let best: PacketRow | undefined;
    for (const row of this.catalogue.list({ model, afterId: 0, limit: 10_000 })) {
      if (!best || isNewerVersion(row.version!, best.version!)) best = row;
    }
    return best;
  }
}

function checkPem(fileName: string, bytes: Buffer, kind: 'certificate' | 'ca-certificate'): void {
  const text = bytes.toString('utf8');
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text) && kind === 'ca-certificate') {
    throw new AppError('SERVER_VALIDATION', `${fileName}: a CA certificate component must not contain a private key.`);
  }
  const block = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)?.[0];
  let ok = false;
  if (block) {
    try {
      const cert = new X509Certificate(block);
      ok = kind === 'certificate' || cert.ca;
    } catch {
      ok = false;
    }
  }
  if (!ok) {
    throw new AppError(
      'SERVER_VALIDATION',
      `${fileName}: not a PEM ${kind === 'ca-certificate' ? 'CA certificate' : 'certificate'}.`,
    );
  }
}
