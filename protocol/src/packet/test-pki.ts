import { createPublicKey, generateKeyPair, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { forgeSigningKey } from './rsa-signer.js';
import type { PacketSigner } from './signature.js';

/*
 * Certificates for tests, simulators and the reference server. Keys come from node:crypto (OpenSSL,
 * off the main thread: fast); certificates are built with node-forge and signed through
 * node:crypto. RSA only, because forge's certificate code is RSA-only.
 */

const generateKeyPairAsync = promisify(generateKeyPair);
const DAY_MS = 24 * 60 * 60 * 1000;

/** A certificate and its private key, both PEM. */
export interface CertificateAndKey {
  /** PEM certificate. */
  certPem: string;
  /** PKCS#8 PEM. */
  keyPem: string;
}

/** Extended key usages {@link issueCertificate} can set. */
export type ExtendedKeyUsage = 'serverAuth' | 'clientAuth' | 'codeSigning' | 'emailProtection';
/** Key usages {@link issueCertificate} can set. */
export type KeyUsage = 'digitalSignature' | 'nonRepudiation' | 'keyEncipherment' | 'keyCertSign' | 'cRLSign';

/** Options of {@link issueCertificate}. */
export interface IssueCertificateOptions {
  /** Subject common name. */
  commonName: string;
  /** Subject organization. Default `router-fleet test`. */
  organization?: string;
  /** The issuing CA; omitted for a self-signed certificate. */
  issuer?: CertificateAndKey;
  /** Reuse this private key (PEM) instead of generating one. */
  keyPem?: string;
  /** RSA modulus length in bits for a generated key. Default 2048. */
  keyBits?: number;
  /** Start of validity. Default: one hour before now. */
  notBefore?: Date;
  /** End of validity. Default: 365 days after now. */
  notAfter?: Date;
  /** The clock for the defaults above. Default `new Date()`. */
  now?: Date;
  /** Make a CA certificate (basicConstraints CA:TRUE, keyCertSign, cRLSign). */
  ca?: boolean | { pathLength: number };
  /** keyUsage bits (critical). Default: CA → keyCertSign + cRLSign; otherwise digitalSignature + keyEncipherment. */
  keyUsage?: readonly KeyUsage[];
  /** extKeyUsage values. Default none. */
  extKeyUsage?: readonly ExtendedKeyUsage[];
  /** subjectAltName entries, e.g. `{ dns: ['localhost'], ip: ['127.0.0.1', '::1'] }`. */
  subjectAltNames?: { dns?: readonly string[]; ip?: readonly string[] };
  /** Serial number as hex. Default: 16 random bytes. */
  serialNumber?: string;
}

async function newKeyPem(bits: number): Promise<string> {
  const { privateKey } = await generateKeyPairAsync('rsa', {
    modulusLength: bits,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return privateKey;
}

function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! % 0x7f) + 1; // positive, no leading zero byte: a minimal DER INTEGER
  return bytes.toString('hex');
}

/**
 * Issues an X.509 v3 certificate (SHA-256 with RSA) with subjectKeyIdentifier and, when issued by a
 * CA, authorityKeyIdentifier. General enough for a root or intermediate CA, a packet signer, a TLS
 * server (`extKeyUsage: ['serverAuth'], subjectAltNames: { dns: ['localhost'], ip: ['127.0.0.1'] }`)
 * or a TLS client certificate.
 */
export async function issueCertificate(options: IssueCertificateOptions): Promise<CertificateAndKey> {
  const now = options.now ?? new Date();
  const keyPem = options.keyPem ?? (await newKeyPem(options.keyBits ?? 2048));
  const publicKeyPem = createPublicKey(keyPem).export({ type: 'spki', format: 'pem' }).toString();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKeyPem);
  cert.serialNumber = options.serialNumber ?? randomSerial();
  cert.validity.notBefore = options.notBefore ?? new Date(now.getTime() - 60 * 60 * 1000);
  cert.validity.notAfter = options.notAfter ?? new Date(now.getTime() + 365 * DAY_MS);
  const subject = [
    { name: 'organizationName', value: options.organization ?? 'router-fleet test' },
    { name: 'commonName', value: options.commonName },
  ];
  cert.setSubject(subject);
  let issuerKeyPem = keyPem;
  let issuerSki: string;
  if (options.issuer) {
    const issuerCert = forge.pki.certificateFromPem(options.issuer.certPem);
    cert.setIssuer(issuerCert.subject.attributes);
    issuerKeyPem = options.issuer.keyPem;
    issuerSki = issuerCert.generateSubjectKeyIdentifier().getBytes();
  } else {
    cert.setIssuer(subject);
    issuerSki = cert.generateSubjectKeyIdentifier().getBytes();
  }
  const isCa = options.ca !== undefined && options.ca !== false;
  const keyUsage = options.keyUsage ?? (isCa ? ['keyCertSign', 'cRLSign'] : ['digitalSignature', 'keyEncipherment']);
  const extensions: Record<string, unknown>[] = [
    {
      name: 'basicConstraints',
      critical: true,
      cA: isCa,
      ...(typeof options.ca === 'object' ? { pathLenConstraint: options.ca.pathLength } : {}),
    },
    { name: 'keyUsage', critical: true, ...Object.fromEntries(keyUsage.map((k) => [k, true])) },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: issuerSki },
  ];
  if (options.extKeyUsage?.length) {
    extensions.push({ name: 'extKeyUsage', ...Object.fromEntries(options.extKeyUsage.map((k) => [k, true])) });
  }
  const san = options.subjectAltNames;
  if (san && ((san.dns?.length ?? 0) > 0 || (san.ip?.length ?? 0) > 0)) {
    extensions.push({
      name: 'subjectAltName',
      altNames: [
        ...(san.dns ?? []).map((value) => ({ type: 2, value })), // dNSName
        ...(san.ip ?? []).map((ip) => ({ type: 7, ip })), // iPAddress
      ],
    });
  }
  cert.setExtensions(extensions);
  cert.sign(forgeSigningKey(issuerKeyPem), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem };
}

/** Options of {@link createCa}. */
export interface CreateCaOptions
  extends Pick<IssueCertificateOptions, 'organization' | 'issuer' | 'keyBits' | 'notBefore' | 'notAfter' | 'now'> {
  /** Subject common name. */
  commonName: string;
  /** Maximum number of intermediate CAs below this one. Default: unlimited. */
  pathLength?: number;
}

/** Creates a CA certificate: a self-signed root, or an intermediate when `issuer` is given. */
export function createCa(options: CreateCaOptions): Promise<CertificateAndKey> {
  const { pathLength, ...rest } = options;
  return issueCertificate({ ...rest, ca: pathLength === undefined ? true : { pathLength } });
}

/** Options of {@link createSigner}. */
export interface CreateSignerOptions
  extends Pick<IssueCertificateOptions, 'organization' | 'keyPem' | 'keyBits' | 'notBefore' | 'notAfter' | 'now'> {
  /** The CA that issues the signer certificate. */
  issuer: CertificateAndKey;
  /** Intermediates between `issuer` (included, if it is not the root) and the root, issuer first. */
  chainPem?: readonly string[];
  /** Default `Packet Signer`. */
  commonName?: string;
}

/**
 * Creates a packet signer: keyUsage digitalSignature (critical) and extKeyUsage codeSigning plus
 * emailProtection (so that `openssl smime -verify` / `openssl cms -verify` accept it with their
 * default S/MIME purpose check).
 */
export async function createSigner(options: CreateSignerOptions): Promise<PacketSigner> {
  const { issuer, chainPem, commonName, ...rest } = options;
  const issued = await issueCertificate({
    ...rest,
    commonName: commonName ?? 'Packet Signer',
    issuer,
    keyUsage: ['digitalSignature'],
    extKeyUsage: ['codeSigning', 'emailProtection'],
  });
  return { ...issued, chainPem: [...(chainPem ?? [])] };
}

/** A complete PKI for tests. Every signer is issued by `intermediate`, itself issued by `root`. */
export interface TestPki {
  /** Self-signed root: the trust anchor devices hold. */
  root: CertificateAndKey;
  /** Intermediate "packet signing CA" issued by `root`. */
  intermediate: CertificateAndKey;
  /** A valid signer (chainPem = [intermediate]). */
  signer: PacketSigner;
  /** A signer whose certificate expired a year ago. */
  expiredSigner: PacketSigner;
  /** A signer whose certificate becomes valid in a year. */
  notYetValidSigner: PacketSigner;
  /** An unrelated self-signed root. */
  foreignCa: CertificateAndKey;
  /** A valid signer issued by `foreignCa` (untrusted by devices that trust `root`). */
  foreignSigner: PacketSigner;
}

/** Options of {@link createTestPki}. */
export interface TestPkiOptions {
  /** The clock the validity periods are relative to. Default `new Date()`. */
  now?: Date;
  /** RSA modulus length in bits. Default 2048. */
  keyBits?: number;
  /** Common-name prefix, to tell several PKIs apart (e.g. for key-rotation tests). Default `Test`. */
  name?: string;
}

/**
 * Creates a {@link TestPki}: seven RSA keys (generated in parallel by node:crypto) and certificates.
 * Takes a second or so; generate it once per test file (see {@link sharedTestPki}).
 */
export async function createTestPki(options: TestPkiOptions = {}): Promise<TestPki> {
  const now = options.now ?? new Date();
  const keyBits = options.keyBits ?? 2048;
  const name = options.name ?? 'Test';
  const keys = await Promise.all(Array.from({ length: 7 }, () => newKeyPem(keyBits)));
  const key = (i: number) => keys[i]!;
  const root = await issueCertificate({
    commonName: `${name} Root CA`,
    keyPem: key(0),
    ca: true,
    now,
    notAfter: new Date(now.getTime() + 10 * 365 * DAY_MS),
  });
  const intermediate = await issueCertificate({
    commonName: `${name} Packet Signing CA`,
    keyPem: key(1),
    issuer: root,
    ca: { pathLength: 0 },
    now,
    notAfter: new Date(now.getTime() + 5 * 365 * DAY_MS),
  });
  const chainPem = [intermediate.certPem];
  const signer = await createSigner({ issuer: intermediate, chainPem, keyPem: key(2), now, commonName: `${name} Signer` });
  const expiredSigner = await createSigner({
    issuer: intermediate,
    chainPem,
    keyPem: key(3),
    commonName: `${name} Expired Signer`,
    notBefore: new Date(now.getTime() - 2 * 365 * DAY_MS),
    notAfter: new Date(now.getTime() - 365 * DAY_MS),
  });
  const notYetValidSigner = await createSigner({
    issuer: intermediate,
    chainPem,
    keyPem: key(4),
    commonName: `${name} Future Signer`,
    notBefore: new Date(now.getTime() + 365 * DAY_MS),
    notAfter: new Date(now.getTime() + 2 * 365 * DAY_MS),
  });
  const foreignCa = await issueCertificate({ commonName: `${name} Foreign Root CA`, keyPem: key(5), ca: true, now });
  const foreignSigner = await createSigner({
    issuer: foreignCa,
    keyPem: key(6),
    now,
    commonName: `${name} Foreign Signer`,
  });
  return { root, intermediate, signer, expiredSigner, notYetValidSigner, foreignCa, foreignSigner };
}

let shared: Promise<TestPki> | undefined;

/**
 * One {@link TestPki} per module instance (vitest gives each test file its own), created on first
 * call and reused after. Use it instead of {@link createTestPki} unless a test needs its own clock.
 */
export function sharedTestPki(): Promise<TestPki> {
  shared ??= createTestPki();
  return shared;
}
