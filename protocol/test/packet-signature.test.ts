import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ProtocolError } from '../src/errors.js';
import {
  createCa,
  createSigner,
  issueCertificate,
  type PacketSigner,
  parseCertificateDer,
  readPacket,
  sharedTestPki,
  signManifest,
  type TestPki,
  verifyCertificateChain,
  verifyManifestSignature,
  writePacket,
} from '../src/packet/index.js';
import { certificatesFromPem } from '../src/packet/certificate.js';
import { bytes, expectCode, flip, meteredStream, tempDir } from './helpers/packet-fixtures.js';
import { listMembers, rebuild } from './helpers/ustar.js';

let pki: TestPki;
beforeAll(async () => {
  pki = await sharedTestPki();
});

const createdAt = new Date('2025-03-01T12:00:00Z');
const payload = bytes(20_000, 5);

function packet(signer?: PacketSigner): Promise<Buffer> {
  return writePacket({
    packetId: 'sig-test',
    createdAt,
    description: 'Signature test',
    files: [{ name: 'fw.tar', fileType: 'FirmwareFull', source: { data: payload }, version: '2.4.0' }],
    ...(signer ? { signer } : {}),
  });
}

function anchors() {
  return { trustAnchors: [pki.root.certPem] };
}

function verifyWithOpenssl(dir: string, manifest: Buffer, sig: Buffer, command: 'smime' | 'cms') {
  writeFileSync(join(dir, 'MANIFEST'), manifest);
  writeFileSync(join(dir, 'MANIFEST.sig'), sig);
  writeFileSync(join(dir, 'root.pem'), pki.root.certPem);
  return spawnSync(
    'openssl',
    [
      command,
      '-verify',
      '-binary',
      '-inform',
      'PEM',
      '-in',
      join(dir, 'MANIFEST.sig'),
      '-content',
      join(dir, 'MANIFEST'),
      '-CAfile',
      join(dir, 'root.pem'),
      '-out',
      join(dir, 'verified.out'),
    ],
    { encoding: 'utf8' },
  );
}

describe('MANIFEST.sig', () => {
  it('verifies with openssl smime and openssl cms, and openssl rejects a tampered MANIFEST', async () => {
    const [manifest, sig] = listMembers(await packet(pki.signer));
    const dir = tempDir();
    for (const command of ['smime', 'cms'] as const) {
      const ok = verifyWithOpenssl(dir, manifest!.data, sig!.data, command);
      expect(ok.status, ok.stderr).toBe(0);
      expect(ok.stderr).toMatch(/Verification successful/);
    }
    const tampered = flip(manifest!.data, manifest!.data.indexOf('Signature test'), 0x20);
    const bad = verifyWithOpenssl(dir, tampered, sig!.data, 'smime');
    expect(bad.status).not.toBe(0);
  });

  it('is a detached SignedData with SHA-256, the signed attributes and the chain (openssl view)', async () => {
    const [, sig] = listMembers(await packet(pki.signer));
    const dir = tempDir();
    writeFileSync(join(dir, 'sig.pem'), sig!.data);
    const text = execFileSync('openssl', ['cms', '-cmsout', '-print', '-inform', 'PEM', '-in', join(dir, 'sig.pem')])
      .toString()
      .replace(/\s+/g, ' ');
    expect(text).toMatch(/eContent: <ABSENT>/);
    expect(text).toMatch(/digestAlgorithm: algorithm: sha256/);
    for (const attr of ['contentType', 'messageDigest', 'signingTime']) expect(text).toContain(`object: ${attr}`);
    expect(text).toContain('Test Signer');
    expect(text).toContain('Test Packet Signing CA');
  });

  it('accepts a signature made by openssl cms -sign (interoperability the other way)', async () => {
    const dir = tempDir();
    const manifest = listMembers(await packet())[0]!.data;
    writeFileSync(join(dir, 'MANIFEST'), manifest);
    writeFileSync(join(dir, 'signer.pem'), pki.signer.certPem);
    writeFileSync(join(dir, 'signer.key'), pki.signer.keyPem);
    writeFileSync(join(dir, 'chain.pem'), pki.intermediate.certPem);
    const pem = execFileSync('openssl', [
      'cms',
      '-sign',
      '-binary',
      '-md',
      'sha256',
      '-in',
      join(dir, 'MANIFEST'),
      '-signer',
      join(dir, 'signer.pem'),
      '-inkey',
      join(dir, 'signer.key'),
      '-certfile',
      join(dir, 'chain.pem'),
      '-outform',
      'PEM',
    ]).toString();
    const signer = verifyManifestSignature(manifest, pem, { ...anchors(), at: new Date() });
    expect(signer.subject).toContain('Test Signer');
    const flipped = flip(manifest, 0);
    expect(() => verifyManifestSignature(flipped, pem, { ...anchors(), at: new Date() })).toThrow(ProtocolError);
  });

  it('rejects a packet without MANIFEST.sig when signatures are required, before reading the payload', async () => {
    const unsigned = await packet();
    const { stream, consumed } = meteredStream(unsigned, 512);
    await expectCode(readPacket(stream, anchors()), 'PROTO_PACKET_SIGNATURE_MISSING', 'MANIFEST.sig');
    expect(consumed()).toBeLessThan(listMembers(unsigned)[1]!.offset + 1024 + 1);
    // Dropping the signature from a signed packet is the same thing.
    const members = listMembers(await packet(pki.signer));
    await expectCode(
      readPacket(rebuild(members.filter((m) => m.name !== 'MANIFEST.sig')), anchors()),
      'PROTO_PACKET_SIGNATURE_MISSING',
    );
  });

  it('rejects a MANIFEST changed after signing (PROTO_PACKET_SIGNATURE_INVALID), even where it stays valid', async () => {
    const members = listMembers(await packet(pki.signer));
    const flipDescription = flip(members[0]!.data, members[0]!.data.indexOf('Signature test'), 0x20); // 'S' -> 's'
    await expectCode(
      readPacket(rebuild([{ ...members[0]!, data: flipDescription }, ...members.slice(1)]), anchors()),
      'PROTO_PACKET_SIGNATURE_INVALID',
      'MANIFEST.sig',
    );
    // No longer hex, so MANIFEST is invalid too: the signature failure is reported first.
    const flipDigest = flip(members[0]!.data, members[0]!.data.indexOf('MD5SUM=') + 7, 0x7f);
    await expectCode(
      readPacket(rebuild([{ ...members[0]!, data: flipDigest }, ...members.slice(1)]), anchors()),
      'PROTO_PACKET_SIGNATURE_INVALID',
    );
  });

  it('rejects a signature made with another key under the trusted signer certificate', async () => {
    const members = listMembers(await packet(pki.signer));
    // signManifest takes the certificate and the key separately: pair the trusted certificate with a
    // foreign key. The digest and the chain are fine; only the RSA signature check can catch it.
    const forged = signManifest(members[0]!.data, { ...pki.signer, keyPem: pki.foreignSigner.keyPem });
    await expectCode(
      readPacket(rebuild([members[0]!, { ...members[1]!, data: Buffer.from(forged) }, ...members.slice(2)]), anchors()),
      'PROTO_PACKET_SIGNATURE_INVALID',
    );
  });

  it('rejects a damaged or garbage MANIFEST.sig', async () => {
    const members = listMembers(await packet(pki.signer));
    const sig = members[1]!.data.toString();
    const body = sig.split(/\r?\n/).slice(1, -2);
    const mid = Math.floor(body.length / 2);
    body[mid] = body[mid]!.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'));
    const damaged = `-----BEGIN PKCS7-----\r\n${body.join('\r\n')}\r\n-----END PKCS7-----\r\n`;
    for (const data of [Buffer.from(damaged), Buffer.from('not a signature'), Buffer.from([0xff, 0xfe]), Buffer.alloc(0)]) {
      await expectCode(
        readPacket(rebuild([members[0]!, { ...members[1]!, data }, ...members.slice(2)]), anchors()),
        'PROTO_PACKET_SIGNATURE_INVALID',
      );
    }
  });

  it('rejects a signer from a foreign CA (PROTO_PACKET_SIGNER_UNTRUSTED)', async () => {
    await expectCode(readPacket(await packet(pki.foreignSigner), anchors()), 'PROTO_PACKET_SIGNER_UNTRUSTED');
    // A signature that is intact but cannot be trusted for lack of anchors is still refused when required.
    await expectCode(readPacket(await packet(pki.signer)), 'PROTO_PACKET_SIGNER_UNTRUSTED');
  });

  it('rejects expired and not-yet-valid signers (PROTO_PACKET_SIGNER_EXPIRED), judged at `at`', async () => {
    const expired = await packet(pki.expiredSigner);
    const future = await packet(pki.notYetValidSigner);
    await expectCode(readPacket(expired, anchors()), 'PROTO_PACKET_SIGNER_EXPIRED');
    await expectCode(readPacket(future, anchors()), 'PROTO_PACKET_SIGNER_EXPIRED');
    const longAgo = new Date(Date.now() - 1.5 * 365 * 24 * 3600 * 1000);
    // The expired signer was valid 1.5 years ago, but the intermediate and root were not yet.
    await expectCode(readPacket(expired, { ...anchors(), at: longAgo }), 'PROTO_PACKET_SIGNER_EXPIRED');
    const inAYearAndAHalf = new Date(Date.now() + 1.5 * 365 * 24 * 3600 * 1000);
    expect((await readPacket(future, { ...anchors(), at: inAYearAndAHalf })).signed).toBe(true);
  });

  it('rejects a signer certificate that may not sign, or a CA that may not issue', async () => {
    const tlsOnly = await issueCertificate({
      commonName: 'TLS server',
      issuer: pki.intermediate,
      extKeyUsage: ['serverAuth'],
      subjectAltNames: { dns: ['localhost'], ip: ['127.0.0.1'] },
    });
    await expectCode(
      readPacket(await packet({ ...tlsOnly, chainPem: [pki.intermediate.certPem] }), anchors()),
      'PROTO_PACKET_SIGNER_UNTRUSTED',
    );
    // The test intermediate has pathLength 0: a sub-CA below it cannot issue signers.
    const subCa = await createCa({ commonName: 'Sub CA', issuer: pki.intermediate });
    const deepSigner = await createSigner({ issuer: subCa, chainPem: [subCa.certPem, pki.intermediate.certPem] });
    await expectCode(readPacket(await packet(deepSigner), anchors()), 'PROTO_PACKET_SIGNER_UNTRUSTED');
    // A leaf (not a CA) cannot act as an issuer either.
    const chainPem = [pki.signer.certPem, pki.intermediate.certPem];
    const fakeCaSigner = await createSigner({ issuer: pki.signer, chainPem });
    await expectCode(readPacket(await packet(fakeCaSigner), anchors()), 'PROTO_PACKET_SIGNER_UNTRUSTED');
  });

  it('requires the intermediate in MANIFEST.sig unless it is itself a trust anchor', async () => {
    const bare = await packet({ ...pki.signer, chainPem: [] });
    await expectCode(readPacket(bare, anchors()), 'PROTO_PACKET_SIGNER_UNTRUSTED');
    expect((await readPacket(bare, { trustAnchors: [pki.intermediate.certPem] })).signed).toBe(true);
  });

  it('in unsigned mode without anchors, still refuses a broken signature but does not claim signed', async () => {
    const signed = await packet(pki.signer);
    const result = await readPacket(signed, { requireSignature: false });
    expect(result.signed).toBe(false);
    expect(result.signer).toBeUndefined();
    const members = listMembers(signed);
    const flipped = flip(members[0]!.data, members[0]!.data.indexOf('Signature test'), 0x20);
    await expectCode(
      readPacket(rebuild([{ ...members[0]!, data: flipped }, ...members.slice(1)]), { requireSignature: false }),
      'PROTO_PACKET_SIGNATURE_INVALID',
    );
    // With anchors, an untrusted signature is refused even when signatures are optional.
    await expectCode(
      readPacket(await packet(pki.foreignSigner), { requireSignature: false, ...anchors() }),
      'PROTO_PACKET_SIGNER_UNTRUSTED',
    );
  });

  it('signManifest output only depends on the signing time', () => {
    const manifest = Buffer.from('FILENAME=a\nFILETYPE=Container\nMD5SUM=d41d8cd98f00b204e9800998ecf8427e\n');
    const a = signManifest(manifest, pki.signer, { signingTime: createdAt });
    expect(signManifest(manifest, pki.signer, { signingTime: createdAt })).toBe(a);
    expect(signManifest(manifest, pki.signer, { signingTime: new Date() })).not.toBe(a);
  });

  it('verifyCertificateChain reports untrusted, expired and not-yet-valid', () => {
    const at = new Date();
    const opts = { trustAnchors: [pki.root.certPem], intermediates: [pki.intermediate.certPem], at };
    const ok = verifyCertificateChain(pki.signer.certPem, opts);
    expect(ok.ok && ok.path.map((c) => c.subject)).toEqual([
      'O=router-fleet test, CN=Test Signer',
      'O=router-fleet test, CN=Test Packet Signing CA',
      'O=router-fleet test, CN=Test Root CA',
    ]);
    const reason = (pem: string, o = opts) => {
      const r = verifyCertificateChain(pem, o);
      return r.ok ? 'ok' : r.reason;
    };
    expect(reason(pki.foreignSigner.certPem)).toBe('untrusted');
    expect(reason(pki.expiredSigner.certPem)).toBe('expired');
    expect(reason(pki.notYetValidSigner.certPem)).toBe('not-yet-valid');
    expect(reason(pki.signer.certPem, { ...opts, intermediates: [] })).toBe('untrusted');
  });

  it('shares parsed certificates read-only, and the shared checks never confuse two certificates', async () => {
    const der = certificatesFromPem(pki.signer.certPem)[0]!;
    const a = parseCertificateDer(der);
    expect(parseCertificateDer(Buffer.from(der))).toBe(a); // equal bytes, another buffer: the same object
    expect(Object.isFrozen(a)).toBe(true);
    const changed = Buffer.from(der);
    changed[changed.length - 1]! ^= 0xff; // the signature's last byte
    der[der.length - 1]! ^= 0xff; // the caller's buffer changes after parsing: the shared copy does not
    expect(a.der.equals(changed)).toBe(false);
    der[der.length - 1]! ^= 0xff;
    expect(parseCertificateDer(changed)).not.toBe(a);
    // The genuine chain is checked (and its signature checks remembered) first; then a signer whose
    // issuer has the very same name but another key must still be untrusted, and the genuine again ok.
    const at = new Date();
    const opts = { trustAnchors: [pki.root.certPem], intermediates: [pki.intermediate.certPem], at };
    expect(verifyCertificateChain(pki.signer.certPem, opts).ok).toBe(true);
    const impostorCa = await createCa({ commonName: 'Test Packet Signing CA' });
    const impostor = await createSigner({ issuer: impostorCa, commonName: 'Test Signer' });
    const viaImpostor = verifyCertificateChain(impostor.certPem, { ...opts, intermediates: [pki.intermediate.certPem, impostorCa.certPem] });
    expect(viaImpostor.ok ? 'ok' : viaImpostor.reason).toBe('untrusted');
    expect(verifyCertificateChain(pki.signer.certPem, opts).ok).toBe(true);
  });

  it('issues TLS server certificates that node:tls accepts for localhost and 127.0.0.1', async () => {
    const { X509Certificate } = await import('node:crypto');
    const server = await issueCertificate({
      commonName: 'localhost',
      issuer: pki.root,
      extKeyUsage: ['serverAuth'],
      subjectAltNames: { dns: ['localhost'], ip: ['127.0.0.1'] },
    });
    const x509 = new X509Certificate(server.certPem);
    expect(x509.checkHost('localhost')).toBe('localhost');
    expect(x509.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(x509.verify(new X509Certificate(pki.root.certPem).publicKey)).toBe(true);
    expect(x509.checkPrivateKey((await import('node:crypto')).createPrivateKey(server.keyPem))).toBe(true);
  });
});
