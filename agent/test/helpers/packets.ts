import { createHash } from 'node:crypto';
import type { ConnectionProfile } from '../../src/connection-profile.js';
import { type PacketSigner, writePacket } from '../../src/packet-api.js';

export type PacketFile = {
  name: string;
  fileType: string;
  data: Buffer | string;
  version?: string;
  requiredSw?: string;
  extra?: { key: string; value: string }[];
};

/** A signed packet (MANIFEST, MANIFEST.sig, files in order). */
export function makePacket(
  signer: PacketSigner | undefined,
  files: PacketFile[],
  options: { targetModels?: string[]; packetId?: string } = {},
): Promise<Buffer> {
  return writePacket({
    files: files.map((f) => ({
      name: f.name,
      fileType: f.fileType,
      source: { data: Buffer.from(f.data) },
      ...(f.version ? { version: f.version } : {}),
      ...(f.requiredSw ? { requiredSw: f.requiredSw } : {}),
      ...(f.extra ? { extra: f.extra } : {}),
    })),
    ...(signer ? { signer } : {}),
    ...(options.targetModels ? { targetModels: options.targetModels } : {}),
    ...(options.packetId ? { packetId: options.packetId } : {}),
  });
}

export const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** A firmware image of `size` bytes for `version`. */
export function firmwareImage(version: string, size = 32 * 1024): Buffer {
  const head = Buffer.from(`emulated firmware ${version}\n`);
  return Buffer.concat([head, Buffer.alloc(Math.max(0, size - head.length), version.charCodeAt(0))]);
}

export function testProfile(overrides: Partial<ConnectionProfile> & Pick<ConnectionProfile, 'serverUrl' | 'caCertPem' | 'trustAnchorsPem'>): ConnectionProfile {
  return {
    format: 'router-fleet.connection-profile/1',
    deviceId: 'dev-0001',
    serialNumber: 'SN-0001',
    credential: 'credential-0123456789abcdef',
    ...overrides,
  };
}
