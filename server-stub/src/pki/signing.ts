import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCa, createSigner, type PacketSigner } from '@router-fleet/protocol';
import { AppError } from '../errors.js';
import { createDirOnce, pemBlocks } from './files.js';

/** Directory of the packet-signing PKI inside the data directory (connection profiles and packets). */
export const SIGNING_DIR = 'signing';

const YEAR_MS = 365 * 24 * 60 * 60 * 1000;

/**
 * The server's packet-signing material: the current signer (signs packets built on the server) and
 * every trust anchor packets may chain to. Several anchors are trusted at once so that the signing
 * key can rotate while packets signed before the rotation stay valid.
 *
 * Layout of `DATA/signing/` (the same as the connection-profile signer's, so one PKI serves both):
 * - `root-ca.pem`, `root-ca.key`: the current signing root (10 years);
 * - `signer.pem`, `signer.key`: the current signer issued by that root (2 years);
 * - `trust-anchors.pem`: every root still trusted, one PEM block each (rotation appends);
 * - `vendor-anchors.pem` (optional): roots of the vendor that signs the firmware catalogue;
 * - `retired/<n>-signer.pem`: signers replaced by a rotation (kept for the record, never used).
 */
export interface SigningPki {
  readonly signer: PacketSigner;
  /** Roots that packets built by this server may chain to (current and rotated-out ones). */
  readonly trustAnchorsPem: readonly string[];
  /** Roots of the firmware vendor (for the catalogue); empty when none are configured. */
  readonly vendorAnchorsPem: readonly string[];
}

function writeAtomic(path: string, data: string, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, path);
}

async function newRootAndSigner(now: Date) {
  const root = await createCa({
    commonName: 'router-fleet Packet Signing Root',
    organization: 'router-fleet server',
    now,
    notAfter: new Date(now.getTime() + 10 * YEAR_MS),
  });
  const signer = await createSigner({
    issuer: root,
    commonName: 'router-fleet Packet Signer',
    organization: 'router-fleet server',
    now,
    notAfter: new Date(now.getTime() + 2 * YEAR_MS),
  });
  return { root, signer };
}

/**
 * Loads the signing PKI of a data directory, creating a root and a signer on first use. Pass the
 * server's (injected) clock as `now`: certificates are valid from an hour before it, so a server on
 * a test clock set in the past can still verify what it signs.
 */
export async function loadOrCreateSigningPki(dataDir: string, now: Date = new Date()): Promise<SigningPki> {
  const dir = join(dataDir, SIGNING_DIR);
  if (!existsSync(join(dir, 'signer.pem'))) {
    const { root, signer } = await newRootAndSigner(now);
    createDirOnce(dir, {
      'root-ca.pem': { data: root.certPem, mode: 0o644 },
      'root-ca.key': { data: root.keyPem, mode: 0o600 },
      'signer.pem': { data: signer.certPem, mode: 0o644 },
      'signer.key': { data: signer.keyPem, mode: 0o600 },
      'trust-anchors.pem': { data: root.certPem, mode: 0o644 },
    });
  }
  return readSigningPki(dir);
}

function readSigningPki(dir: string): SigningPki {
  const text = (name: string) => readFileSync(join(dir, name), 'utf8');
  const optional = (name: string) => (existsSync(join(dir, name)) ? pemBlocks(text(name)) : []);
  const signer: PacketSigner = {
    certPem: text('signer.pem'),
    keyPem: text('signer.key'),
    chainPem: optional('signer-chain.pem'),
  };
  const trustAnchorsPem = pemBlocks(text('trust-anchors.pem'));
  if (trustAnchorsPem.length === 0) throw new Error(`${join(dir, 'trust-anchors.pem')} holds no certificate`);
  return { signer, trustAnchorsPem, vendorAnchorsPem: optional('vendor-anchors.pem') };
}

/**
 * Key rotation: a new root and signer replace the current ones; the new root is appended to
 * `trust-anchors.pem`, so packets signed by the old signer still verify (until its anchor is removed
 * with `retireAnchor` once every device has received the new anchors). The old signer moves to `retired/`.
 */
export async function rotateSigningPki(dataDir: string, now: Date = new Date()): Promise<SigningPki> {
  await loadOrCreateSigningPki(dataDir, now);
  const dir = join(dataDir, SIGNING_DIR);
  const { root, signer } = await newRootAndSigner(now);
  const retired = join(dir, 'retired');
  mkdirSync(retired, { recursive: true, mode: 0o700 });
  const n = readdirSync(retired).filter((f) => f.endsWith('-signer.pem')).length + 1;
  writeFileSync(join(retired, `${n}-signer.pem`), readFileSync(join(dir, 'signer.pem')), { mode: 0o644 });
  const anchors = readFileSync(join(dir, 'trust-anchors.pem'), 'utf8');
  writeAtomic(join(dir, 'trust-anchors.pem'), `${anchors.trimEnd()}\n${root.certPem}`, 0o644);
  writeAtomic(join(dir, 'root-ca.key'), root.keyPem, 0o600);
  writeAtomic(join(dir, 'root-ca.pem'), root.certPem, 0o644);
  writeAtomic(join(dir, 'signer.key'), signer.keyPem, 0o600);
  writeAtomic(join(dir, 'signer.pem'), signer.certPem, 0o644);
  rmSync(join(dir, 'signer-chain.pem'), { force: true });
  return readSigningPki(dir);
}

/** Adds vendor roots (PEM) to `vendor-anchors.pem`, skipping ones already there. */
export function addVendorAnchors(dataDir: string, pem: string): number {
  const dir = join(dataDir, SIGNING_DIR);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, 'vendor-anchors.pem');
  const have = existsSync(path) ? pemBlocks(readFileSync(path, 'utf8')) : [];
  const add = pemBlocks(pem).filter((b) => !have.includes(b));
  if (add.length > 0) writeAtomic(path, [...have, ...add].join(''), 0o644);
  return add.length;
}

/** One root of the signing PKI as `fleet-server signing list` shows it. */
export interface AnchorInfo {
  scope: 'server' | 'vendor';
  /** SHA-256 of the DER certificate, lower-case hex: the name `retire` takes. */
  fingerprint: string;
  subject: string;
  notAfter: string;
  /** The root of the signer in use (never retired). */
  current: boolean;
}

/** Every trusted root of a data directory: the server's (current and rotated-out) and the vendor's. */
export async function listAnchors(dataDir: string, now: Date = new Date()): Promise<AnchorInfo[]> {
  const pki = await loadOrCreateSigningPki(dataDir, now);
  const currentRoot = fingerprintOf(readFileSync(join(dataDir, SIGNING_DIR, 'root-ca.pem'), 'utf8'));
  const info = (scope: AnchorInfo['scope'], pem: string): AnchorInfo => {
    const cert = new X509Certificate(pem);
    const fingerprint = fingerprintOf(pem);
    return {
      scope,
      fingerprint,
      subject: cert.subject.replace(/\n/g, ', '),
      notAfter: new Date(cert.validTo).toISOString(),
      current: scope === 'server' && fingerprint === currentRoot,
    };
  };
  return [...pki.trustAnchorsPem.map((p) => info('server', p)), ...pki.vendorAnchorsPem.map((p) => info('vendor', p))];
}

export function fingerprintOf(pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');
}

/**
 * Ends the overlap of a rotation: removes a server root (or a vendor root) from the trusted set, so
 * packets signed under it are refused once devices have the new set. The root of the signer in use
 * cannot be retired (rotate first). Returns the PKI as it is now; throws when no root matches.
 */
export async function retireAnchor(dataDir: string, fingerprint: string, now: Date = new Date()): Promise<SigningPki> {
  await loadOrCreateSigningPki(dataDir, now);
  const dir = join(dataDir, SIGNING_DIR);
  const want = fingerprint.toLowerCase().replace(/:/g, '');
  if (fingerprintOf(readFileSync(join(dir, 'root-ca.pem'), 'utf8')) === want) {
    throw new AppError('SERVER_ANCHOR_IN_USE');
  }
  for (const file of ['trust-anchors.pem', 'vendor-anchors.pem']) {
    const path = join(dir, file);
    if (!existsSync(path)) continue;
    const blocks = pemBlocks(readFileSync(path, 'utf8'));
    const keep = blocks.filter((b) => fingerprintOf(b) !== want);
    if (keep.length === blocks.length) continue;
    writeAtomic(path, keep.join(''), 0o644);
    return readSigningPki(dir);
  }
  throw new AppError('SERVER_NOT_FOUND', `No trusted root has the fingerprint ${want}.`);
}
