import { execFileSync } from 'node:child_process';
import { createReadStream, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tar from 'tar';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  createCa,
  createSigner,
  type PacketSigner,
  parseManifest,
  readPacket,
  readPacketHead,
  sharedTestPki,
  type TestPki,
  writePacket,
  writePacketToFile,
} from '../src/packet/index.js';
import { bytes, expectCode, md5, meteredStream, sha256, tempDir, vendorSection } from './helpers/packet-fixtures.js';
import { listMembers } from './helpers/ustar.js';

let pki: TestPki;
beforeAll(async () => {
  pki = await sharedTestPki();
});

const createdAt = new Date('2025-03-01T12:00:00Z');
const app = bytes(70_000, 7);
const conf = Buffer.from('container app {\n  image app.tar.xz\n}\n');

function options(signer?: PacketSigner) {
  return {
    packetId: '0f8fad5b-d9cb-469f-a165-70867728950e',
    createdAt,
    targetModels: ['RT-100'],
    description: 'Spring update',
    files: [
      { name: 'app.tar.xz', fileType: 'Container' as const, source: { data: app }, version: '1.2.0' },
      { name: 'conf/app.conf', fileType: 'ContainerConfiguration' as const, source: { data: conf } },
    ],
    ...(signer ? { signer } : {}),
  };
}

describe('write → read', () => {
  it('round-trips a signed packet: MANIFEST, MANIFEST.sig, files in section order', async () => {
    const packet = await writePacket(options(pki.signer));
    expect(listMembers(packet).map((m) => m.name)).toEqual(['MANIFEST', 'MANIFEST.sig', 'app.tar.xz', 'conf/app.conf']);
    const result = await readPacket(packet, { trustAnchors: [pki.root.certPem] });
    expect(result.signed).toBe(true);
    expect(result.signer?.subject).toContain('CN=Test Signer');
    expect(result.signer?.fingerprintSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(result.signer?.notAfter.getTime()).toBeGreaterThan(Date.now());
    expect(result.manifest.header).toMatchObject({ packetId: '0f8fad5b-d9cb-469f-a165-70867728950e' });
    expect(result.manifest.header?.targetModels).toEqual(['RT-100']);
    expect(result.sections.map((s) => [s.fileName, s.fileType, s.size, s.sha256, s.md5sum])).toEqual([
      ['app.tar.xz', 'Container', app.length, sha256(app), md5(app)],
      ['conf/app.conf', 'ContainerConfiguration', conf.length, sha256(conf), md5(conf)],
    ]);
    expect(result.sections[0]?.version).toBe('1.2.0');
    expect(result.size).toBe(packet.length);
    expect(result.sha256).toBe(sha256(packet));
  });

  it('round-trips an unsigned packet when signatures are not required', async () => {
    const packet = await writePacket(options());
    expect(listMembers(packet).map((m) => m.name)).toEqual(['MANIFEST', 'app.tar.xz', 'conf/app.conf']);
    const result = await readPacket(packet, { requireSignature: false });
    expect(result.signed).toBe(false);
    expect(result.signer).toBeUndefined();
    expect(result.sections).toHaveLength(2);
    await expectCode(readPacket(packet), 'PROTO_PACKET_SIGNATURE_MISSING');
  });

  it('keeps the MANIFEST bytes exactly and they parse back to the written manifest', async () => {
    const packet = await writePacket(options(pki.signer));
    const manifestMember = listMembers(packet)[0]!;
    const result = await readPacket(packet, { trustAnchors: [pki.root.certPem] });
    expect(result.manifestBytes.equals(manifestMember.data)).toBe(true);
    expect(parseManifest(manifestMember.data)).toEqual(result.manifest);
    expect(manifestMember.data.toString()).toBe(
      [
        'PACKET_FORMAT=1',
        'PACKET_ID=0f8fad5b-d9cb-469f-a165-70867728950e',
        'TARGET_MODELS=RT-100',
        'CREATED_AT=2025-03-01T12:00:00Z',
        'DESCRIPTION=Spring update',
        'FILENAME=app.tar.xz',
        'FILETYPE=Container',
        `MD5SUM=${md5(app)}`,
        `SHA256SUM=${sha256(app)}`,
        `FILESIZE=${app.length}`,
        'VERSION=1.2.0',
        'FILENAME=conf/app.conf',
        'FILETYPE=ContainerConfiguration',
        `MD5SUM=${md5(conf)}`,
        `SHA256SUM=${sha256(conf)}`,
        `FILESIZE=${conf.length}`,
        '',
      ].join('\n'),
    );
  });

  it('is deterministic for the same input', async () => {
    const a = await writePacket(options(pki.signer));
    const b = await writePacket(options(pki.signer));
    expect(a.equals(b)).toBe(true);
  });

  it('reads from a file path, a Buffer and a stream alike', async () => {
    const dir = tempDir();
    const file = join(dir, 'p.tar');
    const packet = await writePacket(options(pki.signer));
    writeFileSync(file, packet);
    const opts = { trustAnchors: [pki.root.certPem] };
    const fromPath = await readPacket(file, opts);
    const fromStream = await readPacket(createReadStream(file, { highWaterMark: 777 }), opts);
    const fromTinyChunks = await readPacket(meteredStream(packet, 100).stream, opts);
    const fromBuffer = await readPacket(packet, opts);
    for (const r of [fromStream, fromTinyChunks, fromBuffer]) {
      expect(r.sections.map((s) => s.sha256)).toEqual(fromPath.sections.map((s) => s.sha256));
      expect(r.sha256).toBe(fromPath.sha256);
    }
  });

  it('streams file sources to a file, with the same bytes as the in-memory form', async () => {
    const dir = tempDir();
    const big = bytes(3 * 1024 * 1024 + 17, 3);
    writeFileSync(join(dir, 'big.bin'), big);
    const opts = {
      packetId: 'file-form',
      createdAt,
      signer: pki.signer,
      files: [{ name: 'big.bin', fileType: 'FirmwareFull' as const, source: { path: join(dir, 'big.bin') } }],
    };
    const out = join(dir, 'packet.tar');
    const written = await writePacketToFile(out, opts);
    const onDisk = readFileSync(out);
    expect(written.size).toBe(onDisk.length);
    expect(written.sha256).toBe(sha256(onDisk));
    expect(onDisk.equals(await writePacket(opts))).toBe(true);
    const result = await readPacket(out, {
      trustAnchors: [pki.root.certPem],
      expect: { size: written.size, sha256: written.sha256 },
    });
    expect(result.sections[0]?.sha256).toBe(sha256(big));
  });

  it('checks the whole packet against `expect`', async () => {
    const packet = await writePacket(options(pki.signer));
    const opts = { trustAnchors: [pki.root.certPem] };
    await expectCode(readPacket(packet, { ...opts, expect: { size: packet.length - 1 } }), 'PROTO_PACKET_SIZE_MISMATCH');
    await expectCode(readPacket(packet, { ...opts, expect: { size: packet.length + 1 } }), 'PROTO_PACKET_SIZE_MISMATCH');
    await expectCode(
      readPacket(packet, { ...opts, expect: { sha256: sha256('other') } }),
      'PROTO_PACKET_SHA256_MISMATCH',
    );
    const ok = await readPacket(packet, { ...opts, expect: { size: packet.length, sha256: sha256(packet) } });
    expect(ok.size).toBe(packet.length);
  });

  it('writes long names (pax) and reads them back', async () => {
    const name = `${'d'.repeat(120)}/${'f'.repeat(120)}.bin`;
    const packet = await writePacket({
      createdAt,
      files: [{ name, fileType: 'Container', source: { data: conf } }],
    });
    const result = await readPacket(packet, { requireSignature: false });
    expect(result.sections[0]?.fileName).toBe(name);
    const dir = tempDir();
    writeFileSync(join(dir, 'long.tar'), packet);
    expect(execFileSync('tar', ['-tf', join(dir, 'long.tar')]).toString()).toContain(name);
  });
});

describe('interoperability', () => {
  it('GNU tar lists our packets (tar -tvf): regular files, 0644, root/root, fixed mtime', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'p.tar'), await writePacket(options(pki.signer)));
    const lines = execFileSync('tar', ['-tvf', join(dir, 'p.tar')], { env: { ...process.env, TZ: 'UTC' } })
      .toString()
      .trim()
      .split('\n');
    expect(lines.map((l) => l.split(/\s+/).slice(-1)[0])).toEqual([
      'MANIFEST',
      'MANIFEST.sig',
      'app.tar.xz',
      'conf/app.conf',
    ]);
    for (const line of lines) expect(line).toMatch(/^-rw-r--r-- root\/root\s+\d+ 2025-03-01 12:00 /);
    // GNU tar also extracts it bit-exactly.
    execFileSync('tar', ['-xf', join(dir, 'p.tar'), '-C', dir]);
    expect(readFileSync(join(dir, 'app.tar.xz')).equals(app)).toBe(true);
  });

  it('tar@7 lists our packets in strict mode', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'p.tar'), await writePacket(options(pki.signer)));
    const names: string[] = [];
    await tar.t({ file: join(dir, 'p.tar'), strict: true, onReadEntry: (e) => names.push(`${e.type}:${e.path}`) });
    expect(names).toEqual(['File:MANIFEST', 'File:MANIFEST.sig', 'File:app.tar.xz', 'File:conf/app.conf']);
  });

  it('reads a vendor packet made by GNU tar --format=ustar (no header, FILETYPE=Container, MD5SUM only)', async () => {
    const dir = tempDir();
    const payload = bytes(5000, 9);
    writeFileSync(join(dir, 'app.tar.xz'), payload);
    writeFileSync(join(dir, 'MANIFEST'), `FILENAME=app.tar.xz\nFILETYPE=Container\nMD5SUM=${md5(payload)}\n`);
    execFileSync('tar', ['--format=ustar', '-cf', join(dir, 'vendor.tar'), '-C', dir, 'MANIFEST', 'app.tar.xz']);
    const result = await readPacket(join(dir, 'vendor.tar'), { requireSignature: false });
    expect(result.signed).toBe(false);
    expect(result.manifest.header).toBeUndefined();
    expect(result.sections).toEqual([
      {
        fileName: 'app.tar.xz',
        fileType: 'Container',
        md5sum: md5(payload),
        extra: [],
        size: payload.length,
        sha256: sha256(payload),
      },
    ]);
    // The same packet is refused where signatures are required.
    await expectCode(readPacket(join(dir, 'vendor.tar')), 'PROTO_PACKET_SIGNATURE_MISSING');
  });

  it('reads GNU-format archives with GNU long names, and tar@7-made archives', async () => {
    const dir = tempDir();
    const long = `${'x'.repeat(150)}.bin`;
    const payload = Buffer.from('payload');
    writeFileSync(join(dir, long), payload);
    writeFileSync(join(dir, 'MANIFEST'), vendorSection(long, payload));
    execFileSync('tar', ['--format=gnu', '-cf', join(dir, 'gnu.tar'), '-C', dir, 'MANIFEST', long]);
    const gnu = await readPacket(join(dir, 'gnu.tar'), { requireSignature: false });
    expect(gnu.sections[0]?.fileName).toBe(long);

    await tar.c({ file: join(dir, 'node-tar.tar'), cwd: dir, portable: true }, ['MANIFEST', long]);
    const nodeTar = await readPacket(join(dir, 'node-tar.tar'), { requireSignature: false });
    expect(nodeTar.sections[0]?.sha256).toBe(sha256(payload));
  });
});

describe('head, device checks and key rotation', () => {
  it('readPacketHead verifies MANIFEST and signature and stops before the payload', async () => {
    const packet = await writePacket(options(pki.signer));
    const members = listMembers(packet);
    const payloadOffset = members[2]!.offset;
    const { stream, consumed } = meteredStream(packet, 512);
    const head = await readPacketHead(stream, { trustAnchors: [pki.root.certPem] });
    expect(head.signed).toBe(true);
    expect(head.manifest.sections.map((s) => s.fileName)).toEqual(['app.tar.xz', 'conf/app.conf']);
    expect(consumed()).toBeLessThanOrEqual(payloadOffset + 1024);
    // Only the head is needed: a prefix of the packet is enough.
    const prefix = packet.subarray(0, payloadOffset + 512);
    expect((await readPacketHead(prefix, { trustAnchors: [pki.root.certPem] })).signed).toBe(true);
  });

  it('rejects a packet for another model or firmware before any payload byte', async () => {
    const packet = await writePacket(options(pki.signer));
    const payloadOffset = listMembers(packet)[2]!.offset;
    const { stream, consumed } = meteredStream(packet, 512);
    const extractTo = join(tempDir(), 'staging');
    await expectCode(
      readPacket(stream, {
        trustAnchors: [pki.root.certPem],
        device: { model: 'RT-200', firmwareVersion: '2.0.0' },
        extractTo,
      }),
      'PROTO_PACKET_INCOMPATIBLE',
    );
    expect(consumed()).toBeLessThanOrEqual(payloadOffset + 1024);
    expect(() => readFileSync(join(extractTo, 'app.tar.xz'))).toThrow();
    const ok = await readPacket(packet, {
      trustAnchors: [pki.root.certPem],
      device: { model: 'RT-100', firmwareVersion: '2.0.0' },
    });
    expect(ok.signed).toBe(true);
  });

  it('verifies packets signed under either of two trust anchors (key rotation)', async () => {
    const newRoot = await createCa({ commonName: 'Rotated Root CA' });
    const newSigner = await createSigner({ issuer: newRoot, commonName: 'Rotated Signer' });
    const anchors = [pki.root.certPem, newRoot.certPem];
    const oldPacket = await writePacket(options(pki.signer));
    const newPacket = await writePacket(options(newSigner));
    expect((await readPacket(oldPacket, { trustAnchors: anchors })).signer?.subject).toContain('Test Signer');
    expect((await readPacket(newPacket, { trustAnchors: anchors })).signer?.subject).toContain('Rotated Signer');
    // After retiring the old anchor, old packets are refused.
    await expectCode(readPacket(oldPacket, { trustAnchors: [newRoot.certPem] }), 'PROTO_PACKET_SIGNER_UNTRUSTED');
  });
});
