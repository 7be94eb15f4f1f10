import { Buffer } from 'node:buffer';
import { constants, createHash, verify as cryptoVerify } from 'node:crypto';
import forge from 'node-forge';
import { ProtocolError } from '../errors.js';
import { forgeSigningKey } from './rsa-signer.js';
import {
  Oid,
  type ParsedCertificate,
  parseCertificateDer,
  parseDer,
  verifyCertificateChain,
} from './certificate.js';

const { asn1 } = forge;

/** The key material that signs packets: a signer certificate, its key, and the intermediates up to the root. */
export interface PacketSigner {
  /** PEM of the signer certificate (RSA key; keyUsage digitalSignature when present). */
  certPem: string;
  /** PEM of the signer's RSA private key (PKCS#8 or PKCS#1). */
  keyPem: string;
  /** PEMs of intermediate CA certificates, signer's issuer first; embedded in MANIFEST.sig. */
  chainPem?: readonly string[];
}

/** Who signed a packet. */
export interface SignerIdentity {
  /** Subject of the signer certificate, e.g. `CN=Packet Signer, O=Example`. */
  subject: string;
  /** Lowercase hex SHA-256 of the signer certificate's DER. */
  fingerprintSha256: string;
  /** End of the signer certificate's validity. */
  notAfter: Date;
  /** The signingTime attribute, when present (asserted by the signer, not verified). */
  signingTime?: Date;
}

/** Options of {@link signManifest}. */
export interface SignManifestOptions {
  /** Value of the signingTime attribute. Default: now. Fix it for deterministic output. */
  signingTime?: Date;
}

/**
 * Makes MANIFEST.sig: a detached CMS/PKCS#7 SignedData in PEM (`-----BEGIN PKCS7-----`) over the
 * exact MANIFEST bytes: SHA-256, RSA PKCS#1 v1.5, signed attributes contentType (data),
 * messageDigest and signingTime, the signer certificate and `chainPem` embedded. Verifiable with
 * `openssl smime -verify -binary -inform PEM -in MANIFEST.sig -content MANIFEST -CAfile root.pem`.
 * RSA PKCS#1 v1.5 is deterministic, so the output only varies with `signingTime`. forge builds
 * the structure; the RSA operation itself runs in node:crypto.
 */
export function signManifest(manifest: Uint8Array, signer: PacketSigner, options: SignManifestOptions = {}): string {
  const certificate = forge.pki.certificateFromPem(signer.certPem);
  const p7 = forge.pkcs7.createSignedData();
  p7.content = forge.util.createBuffer(Buffer.from(manifest).toString('binary'));
  p7.addCertificate(certificate);
  for (const pem of signer.chainPem ?? []) p7.addCertificate(pem);
  p7.addSigner({
    key: forgeSigningKey(signer.keyPem),
    certificate,
    digestAlgorithm: forge.pki.oids.sha256!,
    authenticatedAttributes: [
      { type: forge.pki.oids.contentType!, value: forge.pki.oids.data },
      { type: forge.pki.oids.messageDigest! },
      // forge accepts a Date here although its typings say string.
      { type: forge.pki.oids.signingTime!, value: (options.signingTime ?? new Date()) as unknown as string },
    ],
  });
  p7.sign({ detached: true });
  return forge.pkcs7.messageToPem(p7);
}

/** Options of {@link verifyManifestSignature}. */
export interface VerifySignatureOptions {
  /** Trusted root certificates (PEM). Several at once support signing-key rotation. */
  trustAnchors: readonly string[];
  /** The time at which the signer chain must be valid. */
  at: Date;
  /**
   * When false, only the signature's integrity is checked (digest and RSA signature with the
   * embedded signer certificate); chain, validity and key usage are not. Default true.
   */
  checkSigner?: boolean;
}

type Asn1 = forge.asn1.Asn1;

function invalid(message: string): ProtocolError {
  return new ProtocolError('PROTO_PACKET_SIGNATURE_INVALID', `MANIFEST.sig: ${message}`, { entry: 'MANIFEST.sig' });
}

function seq(node: Asn1 | undefined, what: string): Asn1[] {
  if (!node || !Array.isArray(node.value)) throw invalid(`malformed ${what}`);
  return node.value;
}

function prim(node: Asn1 | undefined, type: number, what: string): string {
  if (!node || node.tagClass !== asn1.Class.UNIVERSAL || node.type !== type || typeof node.value !== 'string') {
    throw invalid(`malformed ${what}`);
  }
  return node.value;
}

function oidOf(node: Asn1 | undefined, what: string): string {
  return asn1.derToOid(prim(node, asn1.Type.OID, what));
}

function isContext(node: Asn1 | undefined, tag: number): boolean {
  return node?.tagClass === asn1.Class.CONTEXT_SPECIFIC && node.type === tag;
}

interface ParsedSignature {
  certificates: ParsedCertificate[];
  issuerDer: string;
  serial: string;
  signedAttrs: Asn1;
  signature: Buffer;
}

function decodePem(pem: string): string {
  const m = /^\s*-----BEGIN (PKCS7|CMS)-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END \1-----\s*$/.exec(pem);
  if (!m) throw invalid('is not a PEM PKCS7 block');
  return Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64').toString('binary');
}

// RFC 5652: ContentInfo { contentType signedData, [0] EXPLICIT SignedData }.
function parseSignedData(pem: string): ParsedSignature {
  let root: Asn1;
  try {
    root = parseDer(decodePem(pem));
  } catch (error) {
    if (error instanceof ProtocolError) throw error;
    throw invalid('is not valid DER');
  }
  const contentInfo = seq(root, 'ContentInfo');
  if (oidOf(contentInfo[0], 'contentType') !== Oid.signedData) throw invalid('is not a SignedData');
  if (!isContext(contentInfo[1], 0)) throw invalid('malformed ContentInfo');
  const signedData = seq(seq(contentInfo[1], 'ContentInfo')[0], 'SignedData');
  // version, digestAlgorithms, encapContentInfo, [0] certificates?, [1] crls?, signerInfos
  const encap = seq(signedData[2], 'encapContentInfo');
  if (oidOf(encap[0], 'eContentType') !== Oid.data) throw invalid('the signed content type is not data');
  if (encap.length > 1) throw invalid('is not detached (it embeds content)');
  const certificates: ParsedCertificate[] = [];
  let i = 3;
  if (isContext(signedData[i], 0)) {
    for (const certNode of seq(signedData[i], 'certificates')) {
      if (certNode.tagClass !== asn1.Class.UNIVERSAL || certNode.type !== asn1.Type.SEQUENCE) continue;
      try {
        certificates.push(parseCertificateDer(Buffer.from(asn1.toDer(certNode).getBytes(), 'binary')));
      } catch {
        throw invalid('embeds a malformed certificate');
      }
    }
    i++;
  }
  if (isContext(signedData[i], 1)) i++;
  const signerInfos = seq(signedData[i], 'signerInfos');
  if (signedData.length !== i + 1) throw invalid('malformed SignedData');
  if (signerInfos.length !== 1) throw invalid(`has ${signerInfos.length} signers, expected exactly 1`);
  // SignerInfo { version, sid, digestAlgorithm, [0] signedAttrs, signatureAlgorithm, signature, [1]? }
  const si = seq(signerInfos[0], 'SignerInfo');
  const sid = si[1];
  if (!sid || sid.tagClass !== asn1.Class.UNIVERSAL || sid.type !== asn1.Type.SEQUENCE) {
    throw invalid('the signer is not identified by issuer and serial number');
  }
  const [issuer, serialNode] = seq(sid, 'IssuerAndSerialNumber');
  if (!issuer) throw invalid('malformed IssuerAndSerialNumber');
  const serial = prim(serialNode, asn1.Type.INTEGER, 'serialNumber');
  if (oidOf(seq(si[2], 'digestAlgorithm')[0], 'digestAlgorithm') !== Oid.sha256) {
    throw invalid('the digest algorithm is not SHA-256');
  }
  const signedAttrs = si[3];
  if (!isContext(signedAttrs, 0)) throw invalid('has no signed attributes');
  const sigAlg = oidOf(seq(si[4], 'signatureAlgorithm')[0], 'signatureAlgorithm');
  if (sigAlg !== Oid.rsaEncryption && sigAlg !== Oid.sha256WithRSAEncryption) {
    throw invalid('the signature algorithm is not RSA with SHA-256');
  }
  const signature = Buffer.from(prim(si[5], asn1.Type.OCTETSTRING, 'signature'), 'binary');
  return {
    certificates,
    issuerDer: asn1.toDer(issuer).getBytes(),
    serial,
    signedAttrs: signedAttrs!,
    signature,
  };
}

/**
 * Verifies MANIFEST.sig against the exact MANIFEST bytes and returns the signer. Implements what
 * forge lacks (pkcs7 verify): finds the signer certificate by issuer and serial number, checks
 * that the contentType attribute is data and the messageDigest attribute equals SHA-256 of the
 * MANIFEST, verifies the RSA signature over the DER of the signed attributes re-tagged as a SET
 * (RFC 5652 §5.4), checks the signer may sign (keyUsage digitalSignature or nonRepudiation, and
 * extKeyUsage codeSigning, emailProtection or any, when present), then builds a path to one of the
 * trust anchors and checks every certificate's validity at `at`.
 *
 * @throws ProtocolError `PROTO_PACKET_SIGNATURE_INVALID` (malformed or not matching),
 *   `PROTO_PACKET_SIGNER_UNTRUSTED` (no path to an anchor, or a certificate not allowed to sign),
 *   `PROTO_PACKET_SIGNER_EXPIRED` (a certificate on the path expired or not yet valid at `at`).
 */
export function verifyManifestSignature(
  manifest: Uint8Array,
  signaturePem: string,
  options: VerifySignatureOptions,
): SignerIdentity {
  try {
    return verify(manifest, signaturePem, options);
  } catch (error) {
    // Whatever forge's ASN.1 code throws on hostile input is a malformed signature.
    if (error instanceof ProtocolError) throw error;
    throw invalid('is malformed');
  }
}

function verify(manifest: Uint8Array, signaturePem: string, options: VerifySignatureOptions): SignerIdentity {
  const parsed = parseSignedData(signaturePem);
  const signer = parsed.certificates.find((c) => c.issuerDer === parsed.issuerDer && c.serial === parsed.serial);
  if (!signer) throw invalid('does not embed the signer certificate');

  let contentTypeOk = false;
  let digest: string | undefined;
  let signingTime: Date | undefined;
  const seen = new Set<string>();
  for (const attr of seq(parsed.signedAttrs, 'signed attributes')) {
    const [typeNode, valuesNode] = seq(attr, 'attribute');
    const type = oidOf(typeNode, 'attribute type');
    if (seen.has(type)) throw invalid(`repeats the attribute ${type}`);
    seen.add(type);
    const values = seq(valuesNode, 'attribute values');
    if (values.length !== 1) throw invalid(`attribute ${type} must have exactly one value`);
    if (type === Oid.contentType) contentTypeOk = oidOf(values[0], 'contentType') === Oid.data;
    else if (type === Oid.messageDigest) digest = prim(values[0], asn1.Type.OCTETSTRING, 'messageDigest');
    else if (type === Oid.signingTime) {
      const node = values[0]!;
      try {
        signingTime =
          node.type === asn1.Type.UTCTIME
            ? asn1.utcTimeToDate(node.value as string)
            : asn1.generalizedTimeToDate(node.value as string);
      } catch {
        throw invalid('malformed signingTime');
      }
    }
  }
  if (!contentTypeOk) throw invalid('the contentType attribute is missing or not data');
  if (digest === undefined) throw invalid('the messageDigest attribute is missing');
  const actual = createHash('sha256').update(manifest).digest();
  if (!actual.equals(Buffer.from(digest, 'binary'))) throw invalid('the MANIFEST digest does not match');

  // The signature covers the DER of the attributes with the SET OF tag, not the [0] IMPLICIT tag.
  const attrsSet = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SET, true, parsed.signedAttrs.value as Asn1[]);
  const attrsDer = Buffer.from(asn1.toDer(attrsSet).getBytes(), 'binary');
  const publicKey = signer.x509.publicKey;
  if (publicKey.asymmetricKeyType !== 'rsa') throw invalid('the signer key is not RSA');
  let good = false;
  try {
    good = cryptoVerify(
      'sha256',
      attrsDer,
      { key: publicKey, padding: constants.RSA_PKCS1_PADDING },
      parsed.signature,
    );
  } catch {
    good = false;
  }
  if (!good) throw invalid('the RSA signature does not verify');

  const identity: SignerIdentity = {
    subject: signer.subject,
    fingerprintSha256: signer.fingerprintSha256,
    notAfter: signer.notAfter,
    ...(signingTime ? { signingTime } : {}),
  };
  if (options.checkSigner === false) return identity;

  const untrusted = (message: string) =>
    new ProtocolError('PROTO_PACKET_SIGNER_UNTRUSTED', message, { entry: 'MANIFEST.sig' });
  if (signer.keyUsage && !signer.keyUsage.has('digitalSignature') && !signer.keyUsage.has('nonRepudiation')) {
    throw untrusted(`${signer.subject} may not sign (keyUsage lacks digitalSignature)`);
  }
  const eku = signer.extKeyUsage;
  if (eku && ![Oid.codeSigning, Oid.emailProtection, Oid.anyExtendedKeyUsage].some((o) => eku.includes(o))) {
    throw untrusted(`${signer.subject} may not sign packets (extKeyUsage lacks codeSigning)`);
  }
  const chain = verifyCertificateChain(signer, {
    trustAnchors: options.trustAnchors,
    intermediates: parsed.certificates.filter((c) => c !== signer),
    at: options.at,
  });
  if (!chain.ok) {
    if (chain.reason === 'untrusted') throw untrusted(chain.message);
    throw new ProtocolError('PROTO_PACKET_SIGNER_EXPIRED', chain.message, { entry: 'MANIFEST.sig' });
  }
  return identity;
}
