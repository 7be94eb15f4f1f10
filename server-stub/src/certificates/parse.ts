import { Buffer } from 'node:buffer';
import { createPrivateKey } from 'node:crypto';
import { parseCertificateDer } from '@router-fleet/protocol';
import { AppError } from '../errors.js';

/** What the certificate store keeps of an uploaded certificate (never a private key). */
export interface ParsedUpload {
  /** Normalized PEM (one CERTIFICATE block, re-encoded from the DER). */
  pem: string;
  subject: string;
  issuer: string;
  serial: string;
  notBefore: number;
  notAfter: number;
  fingerprintSha256: string;
  isCa: boolean;
  selfSigned: boolean;
  /** Common name of the subject, for a default name. */
  commonName: string | null;
}

const PRIVATE_KEY_PEM = /-----BEGIN ([A-Z0-9 ]*PRIVATE KEY|ENCRYPTED PRIVATE KEY)-----/;
const CERT_BLOCK = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g;

function privateKeyRefused(): AppError {
  return new AppError('SERVER_CERTIFICATE_PRIVATE_KEY');
}

function invalid(message: string): AppError {
  return new AppError('SERVER_CERTIFICATE_INVALID', message);
}

/** True when `der` parses as a private key in any of the usual DER encodings. */
function isPrivateKeyDer(der: Buffer): boolean {
  for (const type of ['pkcs8', 'pkcs1', 'sec1'] as const) {
    try {
      createPrivateKey({ key: der, format: 'der', type });
      return true;
    } catch {
      // not this encoding
    }
  }
  return false;
}

function toPem(der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

function field(dn: string, key: string): string | null {
  for (const line of dn.split('\n')) if (line.startsWith(`${key}=`)) return line.slice(key.length + 1);
  return null;
}

/**
 * Parses one uploaded certificate, PEM text or DER bytes (node-forge's strict ASN.1 parser via the
 * protocol package, plus node's X509Certificate). Private keys (alone or next to a certificate)
 * are refused with SERVER_CERTIFICATE_PRIVATE_KEY; anything else that is not exactly one X.509
 * certificate with SERVER_CERTIFICATE_INVALID. Never throws anything else.
 */
export function parseUpload(input: { pem?: string | undefined; der?: Buffer | undefined }): ParsedUpload {
  let der: Buffer;
  if (input.pem !== undefined) {
    if (PRIVATE_KEY_PEM.test(input.pem)) throw privateKeyRefused();
    const blocks = [...input.pem.matchAll(CERT_BLOCK)];
    if (blocks.length === 0) throw invalid('No PEM CERTIFICATE block found.');
    if (blocks.length > 1) throw invalid('Upload one certificate at a time (the PEM holds several).');
    const body = blocks[0]![1]!.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) throw invalid('The PEM block is not base64.');
    der = Buffer.from(body, 'base64');
  } else if (input.der !== undefined) {
    der = input.der;
    if (der.length === 0) throw invalid('The DER data is empty.');
    if (isPrivateKeyDer(der)) throw privateKeyRefused();
  } else {
    throw new AppError('SERVER_VALIDATION', 'Give the certificate as "pem" (text) or "der" (base64).');
  }
  let parsed: ReturnType<typeof parseCertificateDer>;
  try {
    parsed = parseCertificateDer(der);
  } catch (err) {
    if (isPrivateKeyDer(der)) throw privateKeyRefused();
    throw invalid(`Not an X.509 certificate: ${(err as Error).message.slice(0, 200)}`);
  }
  const x = parsed.x509;
  return {
    pem: toPem(der),
    subject: parsed.subject,
    issuer: x.issuer.split('\n').join(', '),
    serial: x.serialNumber.toLowerCase(),
    notBefore: parsed.notBefore.getTime(),
    notAfter: parsed.notAfter.getTime(),
    fingerprintSha256: parsed.fingerprintSha256,
    isCa: parsed.basicConstraints?.ca === true,
    selfSigned: x.subject === x.issuer && x.checkIssued(x),
    commonName: field(x.subject, 'CN'),
  };
}
