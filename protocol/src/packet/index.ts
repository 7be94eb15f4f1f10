/**
 * Update packets: writing, streaming verification and extraction, MANIFEST helpers, signatures and a
 * test PKI. This file is the complete public surface of `protocol/src/packet`.
 *
 * ## Format (the vendor's, plus our additions; FORMAT.md has the full text)
 *
 * A packet is an **uncompressed tar** (POSIX ustar; pax / GNU long names are read but never needed).
 * Members are regular files only, in this order:
 *
 * 1. `MANIFEST`: UTF-8 without BOM, one `KEY=value` per line, no blanks around `=`, case-sensitive
 *    keys, empty lines ignored. Each `FILENAME=` line starts a section; section order is the order
 *    in which the router processes the files. Section keys: `FILENAME` (mandatory), `FILETYPE`
 *    (mandatory, one of {@link FileTypes}), `MD5SUM` (mandatory), `FILESIZE`, `DESCRIPTION`,
 *    `VERSION`, `REQUIRED_SW` (a semver range the firmware must satisfy) and, **ours**,
 *    `SHA256SUM` (mandatory when the MANIFEST has a packet header, always verified when present).
 *    Unknown keys are kept but not interpreted.
 *    **Ours:** lines before the first `FILENAME=` are the packet header: `PACKET_FORMAT=1`,
 *    `PACKET_ID=<uuid>`, `TARGET_MODELS=<model,model>` (empty or absent: any model),
 *    `CREATED_AT=<ISO 8601>`, optional `DESCRIPTION=`. A vendor MANIFEST has no header.
 * 2. **Ours:** `MANIFEST.sig` (signed packets): a detached CMS/PKCS#7 SignedData, PEM, over the
 *    exact MANIFEST bytes: SHA-256, RSA, signed attributes contentType, messageDigest and
 *    signingTime, embedding the signer certificate and its intermediates. It must chain to a trust
 *    anchor held by the device (several anchors may be trusted at once for key rotation).
 * 3. The files, normally in section order, each named exactly as its `FILENAME`.
 *
 * Names are canonical relative paths: no leading `/`, no `.`/`..`/empty segments, no backslash,
 * NUL or control character. The writer emits mode 0644, uid/gid 0 and one fixed mtime.
 *
 * @example Write, then verify and extract
 * ```ts
 * const packet = await writePacket({
 *   files: [{ name: 'app.tar.xz', fileType: 'Container', source: { data: bytes }, version: '1.2.0' }],
 *   targetModels: ['RT-100'],
 *   signer, // { certPem, keyPem, chainPem }
 * });
 * const result = await readPacket(packet, { trustAnchors: [rootPem], extractTo: stagingDir });
 * ```
 * @packageDocumentation
 */

export {
  type CertificateChainInvalid,
  type CertificateChainOptions,
  type CertificateChainResult,
  type CertificateChainValid,
  type KeyUsageName,
  type ParsedCertificate,
  parseCertificateDer,
  verifyCertificateChain,
} from './certificate.js';
export { checkPacketCompatibility, type DeviceCompatibility } from './compatibility.js';
export { type FileType, FileTypes, isFileType } from './file-types.js';
export { DEFAULT_PACKET_LIMITS, type PacketLimits } from './limits.js';
export {
  MANIFEST_NAME,
  type Manifest,
  type ManifestField,
  type ManifestSection,
  PACKET_FORMAT,
  type PacketHeader,
  type ParseManifestOptions,
  parseManifest,
  SIGNATURE_NAME,
  serializeManifest,
} from './manifest.js';
export { extractionConflict, STAGING_SUFFIX, unsafePathReason } from './member-path.js';
export {
  type PacketHead,
  type PacketSource,
  READ_CHUNK_SIZE,
  type ReadPacketHeadOptions,
  type ReadPacketOptions,
  type ReadPacketResult,
  readPacket,
  readPacketHead,
  type VerifiedSection,
} from './packet-reader.js';
export {
  type PacketFileInput,
  type WritePacketOptions,
  type WrittenPacket,
  writePacket,
  writePacketToFile,
} from './packet-writer.js';
export {
  type PacketSigner,
  type SignerIdentity,
  type SignManifestOptions,
  signManifest,
  type VerifySignatureOptions,
  verifyManifestSignature,
} from './signature.js';
export {
  type CertificateAndKey,
  type CreateCaOptions,
  type CreateSignerOptions,
  createCa,
  createSigner,
  createTestPki,
  type ExtendedKeyUsage,
  type IssueCertificateOptions,
  issueCertificate,
  type KeyUsage,
  sharedTestPki,
  type TestPki,
  type TestPkiOptions,
} from './test-pki.js';
export {
  compareVersions,
  isNewerVersion,
  parseVersion,
  parseVersionRange,
  satisfiesRange,
  type Version,
  type VersionComparator,
  type VersionRange,
} from './version-range.js';
