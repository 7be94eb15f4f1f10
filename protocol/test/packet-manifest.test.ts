import { describe, expect, it } from 'vitest';
import { isProtocolError, ProtocolError } from '../src/errors.js';
import {
  checkPacketCompatibility,
  compareVersions,
  type DeviceCompatibility,
  FileTypes,
  isFileType,
  isNewerVersion,
  type Manifest,
  parseManifest,
  parseVersion,
  parseVersionRange,
  satisfiesRange,
  serializeManifest,
  unsafePathReason,
} from '../src/packet/index.js';

const MD5 = 'd41d8cd98f00b204e9800998ecf8427e';
const SHA = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

const canonical = [
  'PACKET_FORMAT=1',
  'PACKET_ID=0f8fad5b-d9cb-469f-a165-70867728950e',
  'TARGET_MODELS=RT-100,RT-200',
  'CREATED_AT=2025-03-01T12:00:00Z',
  'DESCRIPTION=Spring update',
  'X_FUTURE=kept',
  'FILENAME=app.tar.xz',
  'FILETYPE=Container',
  `MD5SUM=${MD5}`,
  `SHA256SUM=${SHA}`,
  'FILESIZE=0',
  'DESCRIPTION=The app',
  'VERSION=1.2.0',
  'REQUIRED_SW=>=2.0.0 <3',
  'KEY=app.router',
  'FILENAME=app.conf',
  'FILETYPE=ContainerConfiguration',
  `MD5SUM=${MD5}`,
  `SHA256SUM=${SHA}`,
  '',
].join('\n');

function parse(text: string, options = {}): Manifest {
  const result = parseManifest(Buffer.from(text), options);
  if (isProtocolError(result)) throw result;
  return result;
}

function failure(text: string | Buffer, options = {}): ProtocolError {
  const result = parseManifest(typeof text === 'string' ? Buffer.from(text) : text, options);
  if (!isProtocolError(result)) throw new Error('expected a ProtocolError');
  return result;
}

describe('parseManifest / serializeManifest', () => {
  it('parses our MANIFEST with header, sections and unknown keys', () => {
    const m = parse(canonical);
    expect(m.header).toEqual({
      packetFormat: 1,
      packetId: '0f8fad5b-d9cb-469f-a165-70867728950e',
      targetModels: ['RT-100', 'RT-200'],
      createdAt: '2025-03-01T12:00:00Z',
      description: 'Spring update',
      extra: [{ key: 'X_FUTURE', value: 'kept' }],
    });
    expect(m.sections).toEqual([
      {
        fileName: 'app.tar.xz',
        fileType: 'Container',
        md5sum: MD5,
        sha256sum: SHA,
        fileSize: 0,
        description: 'The app',
        version: '1.2.0',
        requiredSw: '>=2.0.0 <3',
        extra: [{ key: 'KEY', value: 'app.router' }],
      },
      { fileName: 'app.conf', fileType: 'ContainerConfiguration', md5sum: MD5, sha256sum: SHA, extra: [] },
    ]);
  });

  it('round-trips canonical bytes exactly, and manifests structurally', () => {
    const bytes = Buffer.from(canonical);
    const m = parse(canonical);
    expect(serializeManifest(m).equals(bytes)).toBe(true);
    expect(parseManifest(serializeManifest(m))).toEqual(m);
    const vendor = `FILENAME=a\nFILETYPE=Container\nMD5SUM=${MD5}\nFILESIZE=0\nDESCRIPTION=x\nVERSION=1\nREQUIRED_SW=^2\n`;
    expect(serializeManifest(parse(vendor)).toString()).toBe(vendor);
  });

  it('reads a vendor MANIFEST (no header, MD5 only), CRLF line ends and empty lines', () => {
    const m = parse(`\r\nFILENAME=app.tar\r\nFILETYPE=Container\r\n\r\nMD5SUM=${MD5.toUpperCase()}\r\n`);
    expect(m.header).toBeUndefined();
    expect(m.sections).toEqual([{ fileName: 'app.tar', fileType: 'Container', md5sum: MD5.toUpperCase(), extra: [] }]);
  });

  it('distinguishes absent and empty TARGET_MODELS', () => {
    const base = `PACKET_FORMAT=1\nPACKET_ID=p\nCREATED_AT=2025-01-01T00:00:00Z\n`;
    const section = `FILENAME=a\nFILETYPE=Container\nMD5SUM=${MD5}\nSHA256SUM=${SHA}\n`;
    expect(parse(base + section).header?.targetModels).toBeUndefined();
    const empty = `PACKET_FORMAT=1\nPACKET_ID=p\nTARGET_MODELS=\nCREATED_AT=2025-01-01T00:00:00Z\n${section}`;
    expect(parse(empty).header?.targetModels).toEqual([]);
    expect(serializeManifest(parse(empty)).toString()).toBe(empty);
  });

  const header = 'PACKET_FORMAT=1\nPACKET_ID=p\nCREATED_AT=2025-01-01T00:00:00Z\n';
  const good = `FILENAME=a\nFILETYPE=Container\nMD5SUM=${MD5}\nSHA256SUM=${SHA}\n`;
  it.each([
    ['a BOM', `\uFEFF${good}`],
    ['blank before =', `FILENAME =a\nFILETYPE=Container\nMD5SUM=${MD5}\n`],
    ['blank after =', `FILENAME= a\nFILETYPE=Container\nMD5SUM=${MD5}\n`],
    ['a line without =', `${good}garbage\n`],
    ['missing FILETYPE', `FILENAME=a\nMD5SUM=${MD5}\n`],
    ['missing MD5SUM', 'FILENAME=a\nFILETYPE=Container\n'],
    ['a bad MD5SUM', 'FILENAME=a\nFILETYPE=Container\nMD5SUM=xyz\n'],
    ['a bad SHA256SUM', `FILENAME=a\nFILETYPE=Container\nMD5SUM=${MD5}\nSHA256SUM=00\n`],
    ['a non-canonical FILESIZE', `FILENAME=a\nFILETYPE=Container\nMD5SUM=${MD5}\nFILESIZE=012\n`],
    ['an unknown FILETYPE', `FILENAME=a\nFILETYPE=Firmware\nMD5SUM=${MD5}\n`],
    ['lower-case FILETYPE', `FILENAME=a\nFILETYPE=container\nMD5SUM=${MD5}\n`],
    ['a key twice', `FILENAME=a\nFILETYPE=Container\nFILETYPE=Container\nMD5SUM=${MD5}\n`],
    ['no sections', header],
    ['a header without PACKET_ID', `PACKET_FORMAT=1\nCREATED_AT=2025-01-01T00:00:00Z\n${good}`],
    ['PACKET_FORMAT=2', `PACKET_FORMAT=2\nPACKET_ID=p\nCREATED_AT=2025-01-01T00:00:00Z\n${good}`],
    ['a bad CREATED_AT', `PACKET_FORMAT=1\nPACKET_ID=p\nCREATED_AT=yesterday\n${good}`],
    ['blanks in TARGET_MODELS', `${header}TARGET_MODELS=A, B\n${good}`],
    ['a header but no SHA256SUM', `${header}FILENAME=a\nFILETYPE=Container\nMD5SUM=${MD5}\n`],
    ['a bad REQUIRED_SW', `FILENAME=a\nFILETYPE=Container\nMD5SUM=${MD5}\nREQUIRED_SW=>=banana\n`],
    ['the reserved name MANIFEST.sig', `FILENAME=MANIFEST.sig\nFILETYPE=Container\nMD5SUM=${MD5}\n`],
    ['a file used as a directory', `${good}FILENAME=a/b\nFILETYPE=Container\nMD5SUM=${MD5}\nSHA256SUM=${SHA}\n`],
    ['a NUL', `FILENAME=a\nFILETYPE=Container\nMD5SUM=${MD5}\nDESCRIPTION=x\0y\n`],
  ])('rejects %s with PROTO_PACKET_MANIFEST_INVALID', (_name, text) => {
    expect(failure(text).code).toBe('PROTO_PACKET_MANIFEST_INVALID');
  });

  it('rejects invalid UTF-8', () => {
    expect(failure(Buffer.from([0x46, 0x3d, 0xff, 0x0a])).code).toBe('PROTO_PACKET_MANIFEST_INVALID');
  });

  it('accepts unknown FILETYPEs only when allowed', () => {
    const text = `FILENAME=a\nFILETYPE=Bootloader\nMD5SUM=${MD5}\n`;
    expect(failure(text).code).toBe('PROTO_PACKET_MANIFEST_INVALID');
    expect(parse(text, { allowUnknownFileTypes: true }).sections[0]?.fileType).toBe('Bootloader');
  });

  it('reports a FILENAME listed twice as PROTO_PACKET_DUPLICATE_ENTRY', () => {
    const e = failure(`${good}${good}`);
    expect(e.code).toBe('PROTO_PACKET_DUPLICATE_ENTRY');
    expect(e.entry).toBe('a');
  });

  it.each(['../x', 'a/../../x', '/etc/passwd', 'a\\b', 'a//b', './a', 'a/', 'a\tb'])(
    'reports FILENAME=%j as PROTO_PACKET_UNSAFE_PATH',
    (name) => {
      const e = failure(`FILENAME=${name}\nFILETYPE=Container\nMD5SUM=${MD5}\n`);
      expect(e.code).toBe('PROTO_PACKET_UNSAFE_PATH');
    },
  );

  it('refuses to serialize values with line breaks', () => {
    const m = parse(canonical);
    m.sections[0]!.description = 'two\nlines';
    expect(() => serializeManifest(m)).toThrow(ProtocolError);
  });
});

describe('FileTypes', () => {
  it('describes every FILETYPE of the vocabulary, including the vendor Container', () => {
    expect(Object.keys(FileTypes).sort()).toEqual(
      [
        'AsciiConfiguration',
        'CaCertificate',
        'Certificate',
        'ConfigurationProfile',
        'ConnectionProfile',
        'Container',
        'ContainerConfiguration',
        'FirmwareFull',
        'FirmwareIncremental',
      ].sort(),
    );
    for (const description of Object.values(FileTypes)) expect(description.length).toBeGreaterThan(10);
    expect(isFileType('Container')).toBe(true);
    expect(isFileType('toString')).toBe(false);
  });
});

describe('paths', () => {
  it('accepts canonical relative paths only', () => {
    expect(unsafePathReason('fw/autoupdate-2.3-full.arm64.tar')).toBeUndefined();
    expect(unsafePathReason('..a')).toBeUndefined();
    for (const bad of ['', '..', '../x', 'x/..', '/x', 'a\\b', 'a\0b', 'a//b', '.', 'a/./b', 'x/']) {
      expect(unsafePathReason(bad), bad).toBeDefined();
    }
  });
});

describe('versions and ranges', () => {
  it('compares versions by semver precedence, loosely parsed', () => {
    const cmp = (a: string, b: string) => Math.sign(compareVersions(parseVersion(a)!, parseVersion(b)!));
    expect(cmp('2.3', '2.3.0')).toBe(0);
    expect(cmp('v2.10.0', '2.9.9')).toBe(1);
    expect(cmp('1.0.0-rc.1', '1.0.0')).toBe(-1);
    expect(cmp('1.0.0-alpha', '1.0.0-alpha.1')).toBe(-1);
    expect(cmp('1.0.0-alpha.1', '1.0.0-alpha.beta')).toBe(-1);
    expect(cmp('1.0.0+build.1', '1.0.0')).toBe(0);
    expect(parseVersion('1.2.3.4')).toBeUndefined();
    expect(parseVersion('01.2')).toBeUndefined();
  });

  it.each([
    ['2.3.1', '>=2.0.0 <3', true],
    ['3.0.0', '>=2.0.0 <3', false],
    ['3.0.0-rc.1', '<3', false],
    ['2.3.1', '^2.1', true],
    ['3.0.0', '^2.1', false],
    ['0.2.5', '^0.2.3', true],
    ['0.3.0', '^0.2.3', false],
    ['1.2.9', '~1.2.3', true],
    ['1.3.0', '~1.2.3', false],
    ['1.2.7', '1.2.x', true],
    ['1.3.0', '1.2', false],
    ['5.0.0', '*', true],
    ['1.5.0', '1.2 - 1.4', false],
    ['1.4.9', '1.2 - 1.4', true],
    ['1.0.0', '<1.0.0 || >=2', false],
    ['2.1.0', '<1.0.0 || >=2', true],
    ['2.0.0', '>1', true],
    ['1.9.0', '>1', false],
    ['1.9.0', '<=1.9', true],
    ['2.0.0', '= 2.0.0', true],
  ])('%s satisfies %j: %s', (version, range, expected) => {
    expect(satisfiesRange(version, range)).toBe(expected);
  });

  it('is the one rule the server picks firmware by: where node-semver disagreed, it follows the routers', () => {
    // node-semver's valid() refused partial versions, which routers report and compare as x.y.0.
    expect(isNewerVersion('10.4', '10.3')).toBe(true);
    expect(isNewerVersion('10.3.1', '10.3')).toBe(true);
    expect(isNewerVersion('10.3.0', '10.3')).toBe(false);
    expect(isNewerVersion('3', '2.9.9')).toBe(true);
    // node-semver's valid() cleaned a leading '=' and blanks; routers cannot parse those.
    for (const text of ['=1.2.3', ' 1.2.3', '1.2.3 ']) {
      expect(parseVersion(text), text).toBeUndefined();
      expect(isNewerVersion(text, '1.0.0'), text).toBe(false);
      expect(isNewerVersion('2.0.0', text), text).toBe(false);
    }
    // Both agree on these.
    expect(isNewerVersion('v2.10.0', '2.9.9')).toBe(true);
    expect(isNewerVersion('1.0.0', '1.0.0-rc.1')).toBe(true);
    expect(isNewerVersion('1.0.0+build.2', '1.0.0')).toBe(false);
    expect(isNewerVersion('banana', '1.0.0')).toBe(false);
  });

  it('rejects malformed ranges', () => {
    for (const bad of ['>=banana', '1.2.3.4', '>>1', '^']) expect(parseVersionRange(bad), bad).toBeUndefined();
  });
});

describe('checkPacketCompatibility', () => {
  const manifest = (sections: string, models = 'RT-100'): Manifest =>
    parse(`PACKET_FORMAT=1\nPACKET_ID=p\nTARGET_MODELS=${models}\nCREATED_AT=2025-01-01T00:00:00Z\n${sections}`);
  const fw = (version: string, extra = '') =>
    `FILENAME=fw.tar\nFILETYPE=FirmwareFull\nMD5SUM=${MD5}\nSHA256SUM=${SHA}\nVERSION=${version}\n${extra}`;
  const device = { model: 'RT-100', firmwareVersion: '2.3.0' };

  it('accepts a matching model, satisfied REQUIRED_SW and a newer firmware', () => {
    expect(checkPacketCompatibility(manifest(fw('2.4.0', 'REQUIRED_SW=>=2.0\n')), device)).toBeUndefined();
    expect(checkPacketCompatibility(manifest(fw('2.4.0'), ''), { ...device, model: 'Other' })).toBeUndefined();
  });

  it('rejects another model, unmet REQUIRED_SW and downgrades', () => {
    const codeOf = (m: Manifest, d: DeviceCompatibility = device) => checkPacketCompatibility(m, d)?.code;
    expect(codeOf(manifest(fw('2.4.0'), 'RT-200'))).toBe('PROTO_PACKET_INCOMPATIBLE');
    expect(codeOf(manifest(fw('2.4.0', 'REQUIRED_SW=^3\n')))).toBe('PROTO_PACKET_INCOMPATIBLE');
    expect(checkPacketCompatibility(manifest(fw('2.2.0')), device)?.entry).toBe('fw.tar');
    expect(codeOf(manifest(fw('2.2.0')), { ...device, allowDowngrade: true })).toBeUndefined();
  });
});
