import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { extractionConflict, readPacket, sharedTestPki, type TestPki, writePacket } from '../src/packet/index.js';
import { bytes, expectCode, flip, meteredStream, tempDir, vendorSection } from './helpers/packet-fixtures.js';
import { listMembers, rebuild, tarArchive } from './helpers/ustar.js';

let pki: TestPki;
let packet: Buffer;
beforeAll(async () => {
  pki = await sharedTestPki();
  packet = await writePacket({
    packetId: 'extract',
    createdAt: new Date('2025-03-01T12:00:00Z'),
    signer: pki.signer,
    files: [
      { name: 'a.bin', fileType: 'Container', source: { data: A } },
      { name: 'fw/b.bin', fileType: 'FirmwareFull', source: { data: B } },
      { name: 'fw/cfg/c.txt', fileType: 'AsciiConfiguration', source: { data: C } },
    ],
  });
});

const A = bytes(2_500_000, 21);
const B = bytes(100_000, 22);
const C = Buffer.from('interface eth0\n');

/** Every path below `dir`, relative, sorted (directories with a trailing slash). */
function tree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .map((d) => {
      const rel = join(d.parentPath, d.name).slice(dir.length + 1);
      return d.isDirectory() ? `${rel}/` : rel;
    })
    .sort();
}

describe('extractTo', () => {
  it('extracts verified members, creating directories, and leaves no .partial files', async () => {
    const root = tempDir();
    const staging = join(root, 'staging', 'job-1');
    const result = await readPacket(packet, { trustAnchors: [pki.root.certPem], extractTo: staging });
    expect(tree(root)).toEqual([
      'staging/',
      'staging/job-1/',
      'staging/job-1/a.bin',
      'staging/job-1/fw/',
      'staging/job-1/fw/b.bin',
      'staging/job-1/fw/cfg/',
      'staging/job-1/fw/cfg/c.txt',
    ]);
    expect(result.sections.map((s) => s.path)).toEqual([
      join(staging, 'a.bin'),
      join(staging, 'fw/b.bin'),
      join(staging, 'fw/cfg/c.txt'),
    ]);
    expect(readFileSync(join(staging, 'a.bin')).equals(A)).toBe(true);
    expect(readFileSync(join(staging, 'fw/b.bin')).equals(B)).toBe(true);
    expect(readFileSync(join(staging, 'fw/cfg/c.txt')).equals(C)).toBe(true);
  });

  it('removes everything it extracted when a later member fails, and keeps what was there before', async () => {
    const members = listMembers(packet);
    const badC = flip(C, 0);
    const evil = rebuild([...members.slice(0, 4), { ...members[4]!, data: badC }]);
    const staging = tempDir();
    writeFileSync(join(staging, 'unrelated.txt'), 'keep me');
    mkdirSync(join(staging, 'fw'));
    await expectCode(
      readPacket(evil, { trustAnchors: [pki.root.certPem], extractTo: staging }),
      'PROTO_PACKET_SHA256_MISMATCH',
      'fw/cfg/c.txt',
    );
    expect(tree(staging)).toEqual(['fw/', 'unrelated.txt']);
    expect(readFileSync(join(staging, 'unrelated.txt'), 'utf8')).toBe('keep me');
  });

  it('removes a staging directory it created when the packet fails at the end', async () => {
    const root = tempDir();
    const staging = join(root, 'new', 'staging');
    const truncated = packet.subarray(0, packet.length - 1024); // no end-of-archive marker
    await expectCode(readPacket(truncated, { trustAnchors: [pki.root.certPem], extractTo: staging }), 'PROTO_PACKET_TAR_CORRUPT');
    expect(tree(root)).toEqual([]);
  });

  it('writes nothing at all when the signature fails', async () => {
    const root = tempDir();
    const staging = join(root, 'staging');
    await expectCode(readPacket(packet, { trustAnchors: [pki.foreignCa.certPem], extractTo: staging }), 'PROTO_PACKET_SIGNER_UNTRUSTED');
    expect(existsSync(staging)).toBe(false);
  });

  it('has written no payload byte when the head is verified (onHead)', async () => {
    const staging = join(tempDir(), 'staging');
    let seenAtHead: string[] | undefined;
    await readPacket(packet, {
      trustAnchors: [pki.root.certPem],
      extractTo: staging,
      onHead: () => {
        seenAtHead = tree(staging);
      },
    });
    expect(seenAtHead).toEqual([]);
  });

  it('streams members through <name>.partial while reading', async () => {
    const staging = tempDir();
    const aOffset = listMembers(packet)[2]!.offset;
    const { stream, consumed } = meteredStream(packet, 64 * 1024);
    const snapshots: string[][] = [];
    stream.on('data', () => {
      if (consumed() > aOffset + 1024 * 1024 && snapshots.length === 0) snapshots.push(tree(staging));
    });
    await readPacket(stream, { trustAnchors: [pki.root.certPem], extractTo: staging });
    expect(snapshots[0]).toEqual(['a.bin.partial']);
  });

  it('never writes outside extractTo: traversal names fail and leave the parent untouched', async () => {
    const root = tempDir();
    const staging = join(root, 'staging');
    for (const name of ['../escaped', 'x/../../escaped', `${root}/escaped`]) {
      const evil = tarArchive([{ name: 'MANIFEST', data: vendorSection('ok', 'x') }, { name, data: 'x' }]);
      await expectCode(readPacket(evil, { requireSignature: false, extractTo: staging }), 'PROTO_PACKET_UNSAFE_PATH');
    }
    expect(tree(root)).toEqual([]);
  });

  it('refuses to follow a symlinked directory planted inside extractTo', async () => {
    const root = tempDir();
    const outside = join(root, 'outside');
    const staging = join(root, 'staging');
    mkdirSync(outside);
    mkdirSync(staging);
    symlinkSync(outside, join(staging, 'fw'));
    await expectCode(readPacket(packet, { trustAnchors: [pki.root.certPem], extractTo: staging }), 'PROTO_PACKET_UNSAFE_PATH', 'fw/b.bin');
    expect(readdirSync(outside)).toEqual([]);
    expect(tree(staging)).toEqual(['fw']);
  });

  it('replaces a planted symlink at a member name instead of writing through it', async () => {
    const root = tempDir();
    const target = join(root, 'victim.txt');
    writeFileSync(target, 'untouched');
    const staging = join(root, 'staging');
    mkdirSync(staging);
    symlinkSync(target, join(staging, 'a.bin'));
    const result = await readPacket(packet, { trustAnchors: [pki.root.certPem], extractTo: staging });
    expect(readFileSync(result.sections[0]!.path!).equals(A)).toBe(true);
    expect(readFileSync(target, 'utf8')).toBe('untouched');
    // A symlink planted at the staging name is not followed either (O_NOFOLLOW): the read fails.
    const staging2 = join(root, 'staging2');
    mkdirSync(staging2);
    symlinkSync(target, join(staging2, 'a.bin.partial'));
    await expect(readPacket(packet, { trustAnchors: [pki.root.certPem], extractTo: staging2 })).rejects.toThrow(/ELOOP/);
    expect(readFileSync(target, 'utf8')).toBe('untouched');
  });

  it('cleans up when aborted through the signal', async () => {
    const staging = join(tempDir(), 'staging');
    const controller = new AbortController();
    const { stream } = meteredStream(packet, 64 * 1024);
    let chunks = 0;
    stream.on('data', () => {
      if (++chunks === 10) controller.abort(new Error('job cancelled'));
    });
    await expect(
      readPacket(stream, { trustAnchors: [pki.root.certPem], extractTo: staging, signal: controller.signal }),
    ).rejects.toThrow('job cancelled');
    expect(existsSync(staging)).toBe(false);
  });

  it('refuses names that collide with another member staging name', async () => {
    const manifest = vendorSection('x', 'a') + vendorSection('x.partial', 'b');
    const evil = tarArchive([
      { name: 'MANIFEST', data: manifest },
      { name: 'x.partial', data: 'b' },
      { name: 'x', data: 'a' },
    ]);
    const staging = tempDir();
    await expectCode(readPacket(evil, { requireSignature: false, extractTo: staging }), 'PROTO_PACKET_DUPLICATE_ENTRY');
    // The same rule without extraction (the server's upload check, the memory platform): a packet
    // that a router could not extract is refused everywhere.
    await expectCode(readPacket(evil, { requireSignature: false }), 'PROTO_PACKET_DUPLICATE_ENTRY', 'x.partial');
    expect(tree(staging)).toEqual([]);
  });

  it('refuses a name that is both a listed file and the directory of another, with or without extractTo', async () => {
    const manifest = vendorSection('fw', 'a') + vendorSection('fw/b.bin', 'b');
    const evil = tarArchive([
      { name: 'MANIFEST', data: manifest },
      { name: 'fw', data: 'a' },
      { name: 'fw/b.bin', data: 'b' },
    ]);
    const staging = tempDir();
    // MANIFEST parsing already refuses this listing (a file used as a directory).
    await expectCode(readPacket(evil, { requireSignature: false, extractTo: staging }), 'PROTO_PACKET_MANIFEST_INVALID');
    await expectCode(readPacket(evil, { requireSignature: false }), 'PROTO_PACKET_MANIFEST_INVALID');
    expect(tree(staging)).toEqual([]);
  });
});

describe('extractionConflict', () => {
  it('names the staging-name and file/directory conflicts and passes names that can live side by side', () => {
    expect(extractionConflict(['x.cfg', 'x.cfg.partial'])?.entry).toBe('x.cfg.partial');
    expect(extractionConflict(['x.cfg.partial', 'x.cfg'])?.entry).toBe('x.cfg.partial');
    expect(extractionConflict(['a/b/c', 'a/b'])?.entry).toBe('a/b/c');
    expect(extractionConflict(['a', 'a/b/c'])?.entry).toBe('a/b/c');
    expect(extractionConflict(['a', 'a.partial/x'])?.entry).toBe('a.partial/x');
    expect(extractionConflict(['x.cfg', 'x.cfg.partial.bak', 'ab/c', 'a', 'a.partialx/y', 'b/c.partial'])).toBeUndefined();
  });
});
