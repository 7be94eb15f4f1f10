import { Buffer } from 'node:buffer';
import { createHash, X509Certificate } from 'node:crypto';
import forge from 'node-forge';

const { asn1 } = forge;

/** OIDs used by the certificate and signature code. */
export const Oid = {
  data: '1.2.840.113549.1.7.1',
  signedData: '1.2.840.113549.1.7.2',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  signingTime: '1.2.840.113549.1.9.5',
  sha256: '2.16.840.1.101.3.4.2.1',
  rsaEncryption: '1.2.840.113549.1.1.1',
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  anyExtendedKeyUsage: '2.5.29.37.0',
  codeSigning: '1.3.6.1.5.5.7.3.3',
  emailProtection: '1.3.6.1.5.5.7.3.4',
} as const;

/** A certificate parsed once: node:crypto for the cryptography, forge's ASN.1 for the fields. */
export interface ParsedCertificate {
  /** The certificate's DER bytes. */
  der: Buffer;
  /** node:crypto's view (public key, signature checks, name matching). */
  x509: X509Certificate;
  /** Subject as `CN=…, O=…` (RFC 4514-like, in certificate order). */
  subject: string;
  /** Start of validity. */
  notBefore: Date;
  /** End of validity. */
  notAfter: Date;
  /** basicConstraints, when present. */
  basicConstraints?: { ca: boolean; pathLength?: number };
  /** keyUsage bits by name, when the extension is present. */
  keyUsage?: ReadonlySet<KeyUsageName>;
  /** extKeyUsage OIDs, when the extension is present. */
  extKeyUsage?: readonly string[];
  /** Lowercase hex SHA-256 of the DER. */
  fingerprintSha256: string;
  /** DER of the issuer Name (binary string), to match a CMS IssuerAndSerialNumber. */
  issuerDer: string;
  /** Content octets of the serial number INTEGER (binary string), to match a CMS IssuerAndSerialNumber. */
  serial: string;
}

/** Names of the keyUsage bits, in bit order. */
export type KeyUsageName =
  | 'digitalSignature'
  | 'nonRepudiation'
  | 'keyEncipherment'
  | 'dataEncipherment'
  | 'keyAgreement'
  | 'keyCertSign'
  | 'cRLSign'
  | 'encipherOnly'
  | 'decipherOnly';
const KEY_USAGE_BITS: readonly KeyUsageName[] = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
  'encipherOnly',
  'decipherOnly',
];

function children(node: forge.asn1.Asn1 | undefined): forge.asn1.Asn1[] {
  if (!node || !Array.isArray(node.value)) throw new Error('unexpected ASN.1 structure');
  return node.value;
}

function bytes(node: forge.asn1.Asn1 | undefined): string {
  if (!node || typeof node.value !== 'string') throw new Error('unexpected ASN.1 structure');
  return node.value;
}

function asn1Time(node: forge.asn1.Asn1 | undefined): Date {
  if (node?.type === asn1.Type.UTCTIME) return asn1.utcTimeToDate(bytes(node));
  if (node?.type === asn1.Type.GENERALIZEDTIME) return asn1.generalizedTimeToDate(bytes(node));
  throw new Error('unexpected validity time encoding');
}

/**
 * Strict DER/BER parse of a binary string. BIT STRINGs are left undecoded (forge would otherwise
 * guess whether their contents are nested ASN.1).
 */
export function parseDer(binary: string): forge.asn1.Asn1 {
  const options = { strict: true, parseAllBytes: true, decodeBitStrings: false };
  return asn1.fromDer(forge.util.createBuffer(binary), options as unknown as boolean);
}

/** Most parsed certificates kept for reuse (trust anchors and signers repeat across packets). */
const PARSED_CACHE_MAX = 256;
const parsedCache = new Map<string, ParsedCertificate>();

/**
 * Parses one DER certificate. Throws on anything malformed. The result is shared with later calls
 * for the same bytes (a small LRU cache: every packet of a fleet names the same signer and anchors,
 * and parsing was most of the cost of verifying a small packet); treat it as read-only.
 */
export function parseCertificateDer(der: Buffer): ParsedCertificate {
  const key = der.toString('latin1');
  const hit = parsedCache.get(key);
  if (hit) {
    parsedCache.delete(key);
    parsedCache.set(key, hit);
    return hit;
  }
  const cert = Object.freeze(parseUncached(Buffer.from(der)));
  parsedCache.set(key, cert);
  if (parsedCache.size > PARSED_CACHE_MAX) parsedCache.delete(parsedCache.keys().next().value!);
  return cert;
}

function parseUncached(der: Buffer): ParsedCertificate {
  const x509 = new X509Certificate(der);
  const root = parseDer(der.toString('binary'));
  const tbs = children(root)[0];
  const fields = children(tbs);
  const hasVersion = fields[0]?.tagClass === asn1.Class.CONTEXT_SPECIFIC && fields[0].type === 0;
  const at = hasVersion ? 1 : 0;
  const serial = bytes(fields[at]);
  const issuer = fields[at + 2];
  if (!issuer) throw new Error('certificate without issuer');
  const validity = children(fields[at + 3]);
  const cert: ParsedCertificate = {
    der,
    x509,
    subject: x509.subject.split('\n').join(', '),
    notBefore: asn1Time(validity[0]),
    notAfter: asn1Time(validity[1]),
    fingerprintSha256: createHash('sha256').update(der).digest('hex'),
    issuerDer: asn1.toDer(issuer).getBytes(),
    serial,
  };
  const extWrapper = fields.find((f) => f.tagClass === asn1.Class.CONTEXT_SPECIFIC && f.type === 3);
  if (extWrapper) {
    for (const ext of children(children(extWrapper)[0])) {
      const parts = children(ext);
      const oid = asn1.derToOid(bytes(parts[0]));
      const value = bytes(parts[parts.length - 1]);
      const inner = parseDer(value);
      if (oid === Oid.basicConstraints) {
        const seq = children(inner);
        let ca = false;
        let pathLength: number | undefined;
        for (const item of seq) {
          if (item.type === asn1.Type.BOOLEAN) ca = bytes(item) !== '\x00';
          else if (item.type === asn1.Type.INTEGER) pathLength = asn1.derToInteger(bytes(item));
        }
        cert.basicConstraints = pathLength === undefined ? { ca } : { ca, pathLength };
      } else if (oid === Oid.keyUsage) {
        const bits = bytes(inner); // first byte: unused bit count
        const set = new Set<KeyUsageName>();
        for (let i = 0; i < KEY_USAGE_BITS.length; i++) {
          const byte = bits.charCodeAt(1 + (i >> 3));
          if (!Number.isNaN(byte) && byte & (0x80 >> (i & 7))) set.add(KEY_USAGE_BITS[i]!);
        }
        cert.keyUsage = set;
      } else if (oid === Oid.extKeyUsage) {
        cert.extKeyUsage = children(inner).map((o) => asn1.derToOid(bytes(o)));
      }
    }
  }
  return cert;
}

/** Splits PEM text (one or several `CERTIFICATE` blocks) into DER buffers. */
export function certificatesFromPem(pem: string): Buffer[] {
  const out: Buffer[] = [];
  const re = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g;
  for (let m = re.exec(pem); m; m = re.exec(pem)) {
    out.push(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'));
  }
  return out;
}

/** A successful {@link verifyCertificateChain}. */
export interface CertificateChainValid {
  /** Discriminant. */
  ok: true;
  /** Leaf first, trust anchor last. */
  path: ParsedCertificate[];
}

/** A failed {@link verifyCertificateChain}. */
export interface CertificateChainInvalid {
  /** Discriminant. */
  ok: false;
  /**
   * `untrusted`: no path to a trust anchor (or a CA on it may not issue certificates);
   * `expired` / `not-yet-valid`: a path exists but a certificate on it is outside its validity at `at`.
   */
  reason: 'untrusted' | 'expired' | 'not-yet-valid';
  /** Human-readable detail naming the certificate concerned. */
  message: string;
}

/** The outcome of {@link verifyCertificateChain}. */
export type CertificateChainResult = CertificateChainValid | CertificateChainInvalid;

/** Options of {@link verifyCertificateChain}. */
export interface CertificateChainOptions {
  /** Trusted root (or pinned) certificates: PEM strings, each may hold several certificates. */
  trustAnchors: readonly string[];
  /** Untrusted intermediates that may help build the path (PEM or parsed). */
  intermediates?: readonly (string | ParsedCertificate)[];
  /** The time at which every certificate of the path must be valid. */
  at: Date;
  /** Maximum number of certificates in a path, anchor included. Default 8. */
  maxPathLength?: number;
}

function canIssue(issuer: ParsedCertificate, intermediatesBelow: number): boolean {
  const bc = issuer.basicConstraints;
  if (!bc?.ca) return false;
  if (bc.pathLength !== undefined && intermediatesBelow > bc.pathLength) return false;
  if (issuer.keyUsage && !issuer.keyUsage.has('keyCertSign')) return false;
  return true;
}

/** Signature checks already made, per child and issuer (parsed certificates are shared, see above). */
const issuedCache = new WeakMap<ParsedCertificate, WeakMap<ParsedCertificate, boolean>>();

function issued(issuer: ParsedCertificate, child: ParsedCertificate): boolean {
  let byIssuer = issuedCache.get(child);
  const known = byIssuer?.get(issuer);
  if (known !== undefined) return known;
  let ok: boolean;
  try {
    ok = child.x509.checkIssued(issuer.x509) && child.x509.verify(issuer.x509.publicKey);
  } catch {
    ok = false;
  }
  if (!byIssuer) issuedCache.set(child, (byIssuer = new WeakMap()));
  byIssuer.set(issuer, ok);
  return ok;
}

function toParsed(input: string | ParsedCertificate): ParsedCertificate[] {
  if (typeof input !== 'string') return [input];
  const out: ParsedCertificate[] = [];
  for (const der of certificatesFromPem(input)) {
    try {
      out.push(parseCertificateDer(der));
    } catch {
      // An unparsable extra certificate cannot help build a path; ignore it.
    }
  }
  return out;
}

/**
 * Builds and checks a certification path from `leaf` to one of `trustAnchors`: every signature, the
 * issuer/subject names, basicConstraints (CA, path length) and keyUsage (keyCertSign) of every
 * issuer, then the validity period of every certificate on the path (anchor included) at `at`.
 * Several anchors may be given at once (key rotation); any path that checks out is enough. Does not
 * check the leaf's own key usage: callers decide what the leaf is for. Never throws.
 */
export function verifyCertificateChain(
  leaf: string | ParsedCertificate,
  options: CertificateChainOptions,
): CertificateChainResult {
  const leafCert = toParsed(leaf)[0];
  if (!leafCert) return { ok: false, reason: 'untrusted', message: 'no parsable leaf certificate' };
  const anchors = options.trustAnchors.flatMap(toParsed);
  const pool = (options.intermediates ?? []).flatMap(toParsed);
  const maxLength = options.maxPathLength ?? 8;
  const paths: ParsedCertificate[][] = [];

  const extend = (path: ParsedCertificate[]): void => {
    if (paths.length >= 16) return;
    const current = path[path.length - 1]!;
    if (anchors.some((a) => a.der.equals(current.der))) {
      paths.push(path);
      return;
    }
    if (path.length >= maxLength) return;
    const intermediatesBelow = path.length - 1;
    for (const anchor of anchors) {
      if (canIssue(anchor, intermediatesBelow) && issued(anchor, current)) paths.push([...path, anchor]);
    }
    for (const candidate of pool) {
      if (path.some((p) => p.der.equals(candidate.der))) continue;
      if (canIssue(candidate, intermediatesBelow) && issued(candidate, current)) extend([...path, candidate]);
    }
  };
  extend([leafCert]);
  if (paths.length === 0) {
    return { ok: false, reason: 'untrusted', message: `${leafCert.subject} does not chain to a trust anchor` };
  }
  const at = options.at.getTime();
  let firstProblem: CertificateChainInvalid | undefined;
  for (const path of paths) {
    const bad = path.find((c) => at < c.notBefore.getTime() || at > c.notAfter.getTime());
    if (!bad) return { ok: true, path };
    if (firstProblem) continue;
    firstProblem = at < bad.notBefore.getTime()
      ? { ok: false, reason: 'not-yet-valid', message: `${bad.subject} is not valid before ${bad.notBefore.toISOString()}` }
      : { ok: false, reason: 'expired', message: `${bad.subject} expired at ${bad.notAfter.toISOString()}` };
  }
  return firstProblem!;
}
