import { gzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ProtocolErrorCode } from '../src/errors.js';
import { type ReadPacketOptions, readPacket, sharedTestPki, type TestPki, writePacket } from '../src/packet/index.js';
import { bytes, expectCode, flip, md5, meteredStream, vendorSection } from './helpers/packet-fixtures.js';
import { entryBytes, listMembers, paxEntry, type RawEntry, rebuild, tarArchive } from './helpers/ustar.js';

let pki: TestPki;
let signed: Buffer;
let members: ReturnType<typeof listMembers>;
beforeAll(async () => {
  pki = await sharedTestPki();
  signed = await writePacket({
    packetId: 'evil-base',
    createdAt: new Date('2025-03-01T12:00:00Z'),
    signer: pki.signer,
    files: [
      { name: 'a.bin', fileType: 'FirmwareFull', source: { data: A } },
      { name: 'b.bin', fileType: 'ConfigurationProfile', source: { data: B } },
    ],
  });
  members = listMembers(signed);
});

const A = bytes(3000, 11);
const B = bytes(1500, 12);
const anchors: ReadPacketOptions = {};
const read = (packet: Buffer, options: ReadPacketOptions = {}) =>
  readPacket(packet, { trustAnchors: [pki.root.certPem], ...anchors, ...options });

/** MANIFEST + MANIFEST.sig of the signed base packet, then `rest`. */
function withSignedHead(...rest: (RawEntry | Buffer)[]): Buffer {
  return tarArchive([
    { name: 'MANIFEST', data: members[0]!.data },
    { name: 'MANIFEST.sig', data: members[1]!.data },
    ...rest,
  ]);
}

/** An unsigned vendor-style packet: MANIFEST listing `listed`, then `rest`. */
function unsigned(listed: Record<string, Buffer | string>, ...rest: (RawEntry | Buffer)[]): Buffer {
  const manifest = Object.entries(listed)
    .map(([name, data]) => vendorSection(name, data))
    .join('');
  return tarArchive([{ name: 'MANIFEST', data: manifest }, ...rest]);
}
const optional = { requireSignature: false };

describe('payload integrity', () => {
  it('rejects a tampered payload byte (SHA256 mismatch)', async () => {
    const evil = flip(A, 1234);
    await expectCode(read(withSignedHead({ name: 'a.bin', data: evil }, { name: 'b.bin', data: B })), 'PROTO_PACKET_SHA256_MISMATCH', 'a.bin');
  });

  it('rejects a payload swapped in from another validly signed packet (mix-and-match)', async () => {
    const otherA = bytes(A.length, 99); // same name, same size, different content
    const other = await writePacket({
      packetId: 'other',
      signer: pki.signer,
      files: [{ name: 'a.bin', fileType: 'FirmwareFull', source: { data: otherA } }],
    });
    expect((await read(other)).signed).toBe(true);
    const otherPayload = listMembers(other).find((m) => m.name === 'a.bin')!.data;
    await expectCode(
      read(withSignedHead({ name: 'a.bin', data: otherPayload }, { name: 'b.bin', data: B })),
      'PROTO_PACKET_SHA256_MISMATCH',
      'a.bin',
    );
  });

  it('rejects an MD5 mismatch in a vendor packet (no SHA256SUM)', async () => {
    const evil = flip(A, 0);
    await expectCode(read(unsigned({ 'a.bin': A }, { name: 'a.bin', data: evil }), optional), 'PROTO_PACKET_MD5_MISMATCH', 'a.bin');
  });

  it('rejects a member whose size differs from FILESIZE, from its header', async () => {
    const longer = Buffer.concat([A, Buffer.from('x')]);
    await expectCode(read(withSignedHead({ name: 'a.bin', data: longer }, { name: 'b.bin', data: B })), 'PROTO_PACKET_SIZE_MISMATCH', 'a.bin');
  });
});

describe('membership and order', () => {
  it('rejects a listed entry that is missing', async () => {
    await expectCode(read(withSignedHead({ name: 'a.bin', data: A })), 'PROTO_PACKET_ENTRY_MISSING', 'b.bin');
  });

  it('rejects an extra entry not listed in MANIFEST', async () => {
    await expectCode(
      read(withSignedHead({ name: 'a.bin', data: A }, { name: 'b.bin', data: B }, { name: 'c.bin', data: 'extra' })),
      'PROTO_PACKET_ENTRY_NOT_LISTED',
      'c.bin',
    );
  });

  it('rejects MANIFEST that is not the first member', async () => {
    const reordered = rebuild([members[2]!, members[0]!, members[1]!, members[3]!]);
    await expectCode(read(reordered), 'PROTO_PACKET_MANIFEST_NOT_FIRST', 'a.bin');
    await expectCode(read(tarArchive([])), 'PROTO_PACKET_MANIFEST_NOT_FIRST');
  });

  it('rejects MANIFEST.sig in any position but the second', async () => {
    const moved = rebuild([members[0]!, members[2]!, members[1]!, members[3]!]);
    await expectCode(read(moved), 'PROTO_PACKET_SIGNATURE_MISSING');
  });

  it('rejects duplicate names in the tar', async () => {
    await expectCode(
      read(withSignedHead({ name: 'a.bin', data: A }, { name: 'a.bin', data: A }, { name: 'b.bin', data: B })),
      'PROTO_PACKET_DUPLICATE_ENTRY',
      'a.bin',
    );
    await expectCode(read(withSignedHead({ name: 'MANIFEST', data: members[0]!.data })), 'PROTO_PACKET_DUPLICATE_ENTRY', 'MANIFEST');
  });

  it('rejects duplicate names in MANIFEST', async () => {
    const manifest = vendorSection('a.bin', A) + vendorSection('a.bin', A);
    await expectCode(
      read(tarArchive([{ name: 'MANIFEST', data: manifest }, { name: 'a.bin', data: A }]), optional),
      'PROTO_PACKET_DUPLICATE_ENTRY',
      'a.bin',
    );
  });

  it('rejects unknown FILETYPEs unless allowed', async () => {
    const manifest = vendorSection('boot.img', A, 'Bootloader');
    const packet = tarArchive([{ name: 'MANIFEST', data: manifest }, { name: 'boot.img', data: A }]);
    await expectCode(read(packet, optional), 'PROTO_PACKET_MANIFEST_INVALID');
    expect((await read(packet, { ...optional, allowUnknownFileTypes: true })).sections[0]?.fileType).toBe('Bootloader');
  });
});

describe('unsafe paths and entry types', () => {
  it.each([
    ['../x', 'traversal'],
    ['a/../../x', 'nested traversal'],
    ['/etc/passwd', 'absolute path'],
    ['a\\..\\x', 'backslashes'],
    ['./a.bin', 'a "." segment'],
  ])('rejects %j (%s) with PROTO_PACKET_UNSAFE_PATH', async (name) => {
    await expectCode(read(withSignedHead({ name, data: 'x' })), 'PROTO_PACKET_UNSAFE_PATH', name);
    await expectCode(read(unsigned({ 'ok.bin': 'x' }, { name, data: 'x' }), optional), 'PROTO_PACKET_UNSAFE_PATH', name);
  });

  it('rejects a NUL inside a name field and inside a pax path', async () => {
    const rawName = Buffer.alloc(100);
    rawName.write('a.bin\0../../evil', 'latin1');
    await expectCode(read(withSignedHead({ name: 'a.bin', rawName, data: A })), 'PROTO_PACKET_UNSAFE_PATH');
    const pax = Buffer.concat([paxEntry({ path: 'a.bin\0x' }), entryBytes({ name: 'a.bin', data: A })]);
    await expectCode(read(withSignedHead(pax)), 'PROTO_PACKET_UNSAFE_PATH');
  });

  it('rejects traversal smuggled through the ustar prefix or a pax path', async () => {
    await expectCode(read(withSignedHead({ name: 'x', prefix: '..', data: 'x' })), 'PROTO_PACKET_UNSAFE_PATH', '../x');
    const pax = Buffer.concat([paxEntry({ path: '../../etc/cron.d/x' }), entryBytes({ name: 'harmless', data: 'x' })]);
    await expectCode(read(withSignedHead(pax)), 'PROTO_PACKET_UNSAFE_PATH', '../../etc/cron.d/x');
  });

  it.each([
    ['symlink', { name: 'a.bin', type: '2', linkName: '/etc/passwd' }],
    ['hardlink', { name: 'a.bin', type: '1', linkName: 'MANIFEST' }],
    ['character device', { name: 'a.bin', type: '3' }],
    ['block device', { name: 'a.bin', type: '4' }],
    ['FIFO', { name: 'a.bin', type: '6' }],
    ['directory', { name: 'dir/', type: '5' }],
    ['GNU sparse file', { name: 'a.bin', type: 'S' }],
    ['contiguous file', { name: 'a.bin', type: '7' }],
    ['unknown type', { name: 'a.bin', type: 'Z' }],
  ] as [string, RawEntry][])('rejects a %s with PROTO_PACKET_UNSUPPORTED_ENTRY', async (_kind, entry) => {
    await expectCode(read(withSignedHead(entry)), 'PROTO_PACKET_UNSUPPORTED_ENTRY', entry.name);
    await expectCode(read(unsigned({ 'a.bin': 'x' }, entry), optional), 'PROTO_PACKET_UNSUPPORTED_ENTRY');
  });

  it('rejects a directory spelled as a regular file with a trailing slash', async () => {
    await expectCode(read(withSignedHead({ name: 'dir/', data: '' })), 'PROTO_PACKET_UNSAFE_PATH');
  });

  it('accepts a pax global header that only carries a comment (as git archive writes)', async () => {
    const comment = paxEntry({ comment: '0123456789abcdef' }, 'g');
    const packet = tarArchive([comment, ...members.map((m) => ({ name: m.name, data: m.data }))]);
    expect((await read(packet)).sections).toHaveLength(2);
  });

  it('rejects pax global headers that rename members, and sparse pax records', async () => {
    const global = paxEntry({ path: 'a.bin' }, 'g');
    await expectCode(read(withSignedHead(global, { name: 'a.bin', data: A })), 'PROTO_PACKET_UNSUPPORTED_ENTRY');
    const sparse = Buffer.concat([paxEntry({ 'GNU.sparse.size': '10' }), entryBytes({ name: 'a.bin', data: A })]);
    await expectCode(read(withSignedHead(sparse)), 'PROTO_PACKET_UNSUPPORTED_ENTRY');
  });
});

describe('limits', () => {
  it('rejects an oversize entry from its header, before reading its body', async () => {
    // The header claims 8 GiB; no body follows. A reader that tried to read it would report truncation.
    const huge = tarArchive([{ name: 'MANIFEST', data: vendorSection('a.bin', A) }, { name: 'a.bin', size: 0o77777777777 }], {
      end: false,
    });
    await expectCode(read(huge, optional), 'PROTO_PACKET_LIMIT_EXCEEDED', 'a.bin');
    await expectCode(
      read(withSignedHead({ name: 'a.bin', data: A }, { name: 'b.bin', data: B }), { limits: { maxEntrySize: 2000 } }),
      'PROTO_PACKET_LIMIT_EXCEEDED',
    );
  });

  it('stops reading as soon as a header breaks a limit', async () => {
    const packet = withSignedHead({ name: 'a.bin', data: A }, { name: 'b.bin', data: B });
    const { stream, consumed } = meteredStream(packet, 512);
    await expectCode(read(stream as never, { limits: { maxEntrySize: 1000 } }), 'PROTO_PACKET_LIMIT_EXCEEDED');
    const aOffset = members[2]!.offset;
    expect(consumed()).toBeLessThanOrEqual(aOffset + 1024);
  });

  it('rejects too many entries', async () => {
    await expectCode(read(signed, { limits: { maxEntries: 3 } }), 'PROTO_PACKET_LIMIT_EXCEEDED');
    // MANIFEST + 1 listed file fit maxEntries 2; the third member breaks it before its listing is checked.
    const many = unsigned({ 'a.bin': 'x' }, { name: 'a.bin', data: 'x' }, { name: 'b', data: 'x' });
    await expectCode(read(many, { ...optional, limits: { maxEntries: 2 } }), 'PROTO_PACKET_LIMIT_EXCEEDED', 'b');
  });

  it('rejects paths that are too deep or too long', async () => {
    const deep = 'a/b/c/d/e.bin';
    await expectCode(read(unsigned({ 'x.bin': 'x' }, { name: deep, data: 'x' }), optional), 'PROTO_PACKET_LIMIT_EXCEEDED', deep);
    await expectCode(read(unsigned({ [deep]: 'x' }, { name: deep, data: 'x' }), optional), 'PROTO_PACKET_LIMIT_EXCEEDED', deep);
    expect((await read(unsigned({ [deep]: 'x' }, { name: deep, data: 'x' }), { ...optional, limits: { maxPathDepth: 5 } })).sections).toHaveLength(1);
    const long = 'l'.repeat(90);
    await expectCode(read(unsigned({ [long]: 'x' }, { name: long, data: 'x' }), { ...optional, limits: { maxPathLength: 80 } }), 'PROTO_PACKET_LIMIT_EXCEEDED');
  });

  it('rejects an oversize MANIFEST, MANIFEST.sig, total size and extended header', async () => {
    await expectCode(read(signed, { limits: { maxManifestSize: 100 } }), 'PROTO_PACKET_LIMIT_EXCEEDED', 'MANIFEST');
    await expectCode(read(signed, { limits: { maxSignatureSize: 1000 } }), 'PROTO_PACKET_LIMIT_EXCEEDED', 'MANIFEST.sig');
    await expectCode(read(signed, { limits: { maxTotalSize: 8000 } }), 'PROTO_PACKET_LIMIT_EXCEEDED');
    const bigPax = Buffer.concat([paxEntry({ comment: 'c'.repeat(70_000) }), entryBytes({ name: 'a.bin', data: A })]);
    await expectCode(read(withSignedHead(bigPax)), 'PROTO_PACKET_LIMIT_EXCEEDED');
  });

  it('rejects MANIFESTs that announce more than the limits allow, before any payload', async () => {
    const manifest = `FILENAME=big.bin\nFILETYPE=Container\nMD5SUM=${md5('')}\nFILESIZE=5000000000\n`;
    await expectCode(read(tarArchive([{ name: 'MANIFEST', data: manifest }]), optional), 'PROTO_PACKET_LIMIT_EXCEEDED', 'big.bin');
  });
});

describe('not a tar', () => {
  const cases: [string, () => Buffer, ProtocolErrorCode][] = [
    ['garbage bytes', () => bytes(4096, 42), 'PROTO_PACKET_TAR_CORRUPT'],
    ['an empty input', () => Buffer.alloc(0), 'PROTO_PACKET_TAR_CORRUPT'],
    ['less than a block', () => Buffer.from('MANIFEST'), 'PROTO_PACKET_TAR_CORRUPT'],
    ['a gzip-compressed packet', () => gzipSync(signed), 'PROTO_PACKET_TAR_CORRUPT'],
    ['a header with a bad checksum', () => tarArchive([{ name: 'MANIFEST', data: 'x', badChecksum: true }]), 'PROTO_PACKET_TAR_CORRUPT'],
    ['a v7 header without ustar magic', () => tarArchive([{ name: 'MANIFEST', data: 'x', magic: 'none' }]), 'PROTO_PACKET_TAR_CORRUPT'],
    ['a truncation inside a payload', () => signed.subarray(0, members[2]!.offset + 700), 'PROTO_PACKET_TAR_CORRUPT'],
    ['a truncation inside MANIFEST.sig', () => signed.subarray(0, members[1]!.offset + 1000), 'PROTO_PACKET_TAR_CORRUPT'],
    ['a truncation inside a header', () => signed.subarray(0, members[3]!.offset + 100), 'PROTO_PACKET_TAR_CORRUPT'],
    ['a missing end-of-archive marker', () => signed.subarray(0, signed.length - 1024), 'PROTO_PACKET_TAR_CORRUPT'],
    ['a lone zero block', () => signed.subarray(0, signed.length - 512), 'PROTO_PACKET_TAR_CORRUPT'],
    ['garbage after the end marker', () => Buffer.concat([signed, Buffer.from('trailing')]), 'PROTO_PACKET_TAR_CORRUPT'],
  ];
  it.each(cases)('rejects %s', async (_name, make, code) => {
    await expectCode(read(make()), code);
  });

  it('accepts zero padding after the end marker (GNU tar records)', async () => {
    expect((await read(Buffer.concat([signed, Buffer.alloc(9216)]))).signed).toBe(true);
  });
});

describe('robustness', () => {
  it('answers every single-byte corruption and truncation with a ProtocolError, or with the verified bytes', async () => {
    const { isProtocolError } = await import('../src/errors.js');
    const expected = (await read(signed)).sections.map((s) => s.sha256);
    let seed = 12345;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 400; i++) {
      const input = i % 4 === 3
        ? signed.subarray(0, random(signed.length))
        : flip(signed, random(signed.length), 1 << random(8));
      try {
        const result = await read(input);
        expect(result.sections.map((s) => s.sha256)).toEqual(expected);
        outcomes.set('ok', (outcomes.get('ok') ?? 0) + 1);
      } catch (error) {
        if (!isProtocolError(error)) throw error;
        outcomes.set(error.code, (outcomes.get(error.code) ?? 0) + 1);
      }
    }
    // Corruptions land in headers, MANIFEST, the signature and payloads alike.
    for (const code of ['PROTO_PACKET_TAR_CORRUPT', 'PROTO_PACKET_SIGNATURE_INVALID', 'PROTO_PACKET_SHA256_MISMATCH']) {
      expect(outcomes.get(code), JSON.stringify([...outcomes])).toBeGreaterThan(0);
    }
  });
});
