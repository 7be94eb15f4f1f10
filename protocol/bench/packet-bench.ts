/**
 * Packet benchmark: builds a signed ~50 MB packet (three sections) in a temporary directory, then
 * measures in the same run, alternating so that drift hits every case alike:
 * - the floor: bare MD5 + SHA-256 of the packet file, streamed from disk in READ_CHUNK_SIZE chunks;
 * - `readPacket` verification of the same file (signature, MANIFEST, per-member MD5 + SHA-256,
 *   whole-packet SHA-256 against `expect`), without and with `extractTo`.
 * Each figure is the best of several iterations, in MB/s (10^6 bytes per second) of packet bytes.
 * Runs directly too: `node protocol/bench/packet-bench.js` after compiling.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  createCa,
  createSigner,
  READ_CHUNK_SIZE,
  readPacket,
  writePacketToFile,
} from '../src/packet/index.js';

/** One benchmark figure. `floor` and `ratio` (case / floor) are set for the measured cases. */
export interface PacketBenchRow {
  name: string;
  mbPerSec?: number;
  opsPerSec?: number;
  bytes?: number;
  floor?: string;
  ratio?: number;
}

/** Options of {@link runPacketBench}. */
export interface PacketBenchOptions {
  /** Payload size in MB (10^6 bytes). Default 50. */
  sizeMb?: number;
  /** Iterations per case; the best is reported. Default 5. */
  iterations?: number;
}

async function hashFile(path: string): Promise<void> {
  const md5 = createHash('md5');
  const sha256 = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: READ_CHUNK_SIZE })) {
    md5.update(chunk as Buffer);
    sha256.update(chunk as Buffer);
  }
  md5.digest();
  sha256.digest();
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** Runs the packet benchmark and returns its figures (see the file comment). */
export async function runPacketBench(options: PacketBenchOptions = {}): Promise<PacketBenchRow[]> {
  const sizeMb = options.sizeMb ?? 50;
  const iterations = options.iterations ?? 5;
  const dir = await mkdtemp(join(tmpdir(), 'packet-bench-'));
  try {
    const total = sizeMb * 1_000_000;
    const parts = [
      { name: 'firmware/autoupdate-2.3-full.arm64.tar', fileType: 'FirmwareFull' as const, size: Math.round(total * 0.6) },
      { name: 'containers/app.tar.xz', fileType: 'Container' as const, size: Math.round(total * 0.3) },
      { name: 'containers/app.conf', fileType: 'ContainerConfiguration' as const, size: Math.round(total * 0.1) },
    ];
    for (const part of parts) await writeFile(join(dir, part.name.replace('/', '-')), randomBytes(part.size));
    const root = await createCa({ commonName: 'Bench Root CA' });
    const signer = await createSigner({ issuer: root, commonName: 'Bench Signer' });
    const packetPath = join(dir, 'packet.tar');
    const writeSeconds = await timed(() =>
      writePacketToFile(packetPath, {
        signer,
        files: parts.map((p) => ({ name: p.name, fileType: p.fileType, source: { path: join(dir, p.name.replace('/', '-')) } })),
      }),
    );
    const written = await writePacketToFile(packetPath, {
      signer,
      createdAt: new Date('2025-01-01T00:00:00Z'),
      packetId: 'bench',
      files: parts.map((p) => ({ name: p.name, fileType: p.fileType, source: { path: join(dir, p.name.replace('/', '-')) } })),
    });
    const readOptions = { trustAnchors: [root.certPem], expect: { size: written.size, sha256: written.sha256 } };

    const best = { floor: Infinity, verify: Infinity, extract: Infinity };
    await hashFile(packetPath); // warm the page cache and the JIT
    await readPacket(packetPath, readOptions);
    for (let i = 0; i < iterations; i++) {
      best.floor = Math.min(best.floor, await timed(() => hashFile(packetPath)));
      best.verify = Math.min(best.verify, await timed(() => readPacket(packetPath, readOptions)));
      const extractTo = join(dir, `staging-${i}`);
      best.extract = Math.min(best.extract, await timed(() => readPacket(packetPath, { ...readOptions, extractTo })));
      await rm(extractTo, { recursive: true, force: true });
    }
    const mbps = (seconds: number) => +(written.size / 1e6 / seconds).toFixed(1);
    const floorName = `packet md5+sha256 floor ${sizeMb}MB`;
    const floor = mbps(best.floor);
    const row = (name: string, seconds: number): PacketBenchRow => ({
      name,
      mbPerSec: mbps(seconds),
      bytes: written.size,
      floor: floorName,
      ratio: +(mbps(seconds) / floor).toFixed(2),
    });
    // A small packet, as a fleet update job sends it to thousands of devices: here the fixed cost
    // (signature, certificate chain, tar framing, file open) is what counts, in packets per second.
    const smallPath = join(dir, 'small.tar');
    await writeFile(join(dir, 'small-fw'), randomBytes(16 * 1024));
    const small = await writePacketToFile(smallPath, {
      signer,
      files: [{ name: 'firmware/small.bin', fileType: 'FirmwareFull' as const, source: { path: join(dir, 'small-fw') } }],
    });
    const smallOptions = { trustAnchors: [root.certPem], expect: { size: small.size, sha256: small.sha256 } };
    let smallOps = 0;
    for (let i = 0; i < iterations; i++) {
      let n = 0;
      const started = process.hrtime.bigint();
      while (Number(process.hrtime.bigint() - started) < 500e6) {
        await readPacket(smallPath, smallOptions);
        n++;
      }
      smallOps = Math.max(smallOps, n / (Number(process.hrtime.bigint() - started) / 1e9));
    }
    return [
      { name: 'packet readPacket verify 16KiB signed', opsPerSec: Math.round(smallOps), bytes: small.size },
      { name: floorName, mbPerSec: floor, bytes: written.size },
      row(`packet readPacket verify ${sizeMb}MB`, best.verify),
      row(`packet readPacket verify+extractTo ${sizeMb}MB`, best.extract),
      { name: `packet writePacketToFile ${sizeMb}MB (hash + copy, signed)`, mbPerSec: mbps(writeSeconds), bytes: written.size },
    ];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const row of await runPacketBench()) console.log(JSON.stringify(row));
}
