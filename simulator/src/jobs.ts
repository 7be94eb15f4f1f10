import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { SimError } from './errors.js';
import type { RestClient } from './rest.js';

/** A firmware packet the simulator builds on the server (`POST /api/packets/build`). */
export interface PacketSpec {
  /** Firmware version the packet installs. Default `99.0.0` (newer than any generated fleet). */
  firmwareVersion?: string;
  /** Size of the firmware image in bytes (deterministic content). Default 32 KiB. */
  sizeBytes?: number;
  name?: string;
}

export interface JobSpec {
  /** Build a firmware packet … */
  packet?: PacketSpec;
  /** … or use an existing packet … */
  packetUuid?: string;
  /** … or a vendor firmware version from the catalogue. */
  firmwareVersion?: string;
  /** Devices: `managed` (default: the routers admitted now), `all`, or a list of device UUIDs. */
  target?: 'managed' | 'all' | string[];
  /** Job options passed through (rollout, retries, timeoutSec, …). */
  options?: Record<string, unknown>;
  name?: string;
}

export interface JobView {
  uuid: string;
  state: string;
  progress: {
    devices: { total: number; pending: number; skipped: number; active: number; done: number };
    results: Record<string, number>;
    /** Executions under way, by state. */
    inFlight: Record<string, number>;
    percentComplete: number;
    /** Progress reports the server ignored (behind the state it holds). */
    ignoredProgress: number;
  };
}

export interface JobDeviceResult {
  deviceUuid: string;
  serialNumber: string;
  status: string;
  result: string | null;
  errorCode: string | null;
  attempts: number;
}

/** Deterministic firmware bytes of a given size (no randomness: the same run builds the same packet). */
export function firmwareImage(size: number, version: string): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(`router-fleet simulator firmware ${version}`).digest();
  for (let off = 0; off < size; off += block.length) {
    block.copy(out, off, 0, Math.min(block.length, size - off));
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/** Builds a signed firmware packet on the server; returns its UUID. */
export async function buildFirmwarePacket(rest: RestClient, spec: PacketSpec = {}): Promise<string> {
  const version = spec.firmwareVersion ?? '99.0.0';
  const image = firmwareImage(spec.sizeBytes ?? 32 * 1024, version);
  const packet = await rest.json<{ uuid: string }>('POST', '/api/packets/build', {
    name: spec.name ?? `simulator firmware ${version}`,
    components: [{ kind: 'firmware', fileName: `firmware-${version}.bin`, data: image.toString('base64'), version }],
  });
  return packet.uuid;
}

/** Creates a job; `managedDeviceIds` resolves the `managed` target. */
export async function createJob(rest: RestClient, spec: JobSpec, managedDeviceIds: () => Promise<string[]>): Promise<JobView> {
  let packetUuid = spec.packetUuid;
  if (!packetUuid && !spec.firmwareVersion) packetUuid = await buildFirmwarePacket(rest, spec.packet);
  const t = spec.target ?? 'managed';
  const target = t === 'all' ? { all: true } : { deviceUuids: t === 'managed' ? await managedDeviceIds() : t };
  return rest.json<JobView>('POST', '/api/jobs', {
    name: spec.name ?? 'simulator job',
    ...(packetUuid ? { packetUuid } : { firmwareVersion: spec.firmwareVersion }),
    target,
    ...(spec.options ? { options: spec.options } : {}),
  });
}

export function getJob(rest: RestClient, uuid: string): Promise<JobView> {
  return rest.json<JobView>('GET', `/api/jobs/${uuid}`);
}

/** Polls a job until its percent complete reaches `percent` (or it ends). */
/**
 * Whether a job is at least `percent` complete. 100 % means every device is done: the API's
 * percentage is rounded to 0.1, so 14,994 of 15,000 already reads 100.0.
 */
export function reached(job: JobView, percent: number): boolean {
  const { done, total } = job.progress.devices;
  return percent >= 100 ? done >= total : job.progress.percentComplete >= percent;
}

export async function waitJob(rest: RestClient, uuid: string, percent = 100, timeoutMs = 600_000, pollMs = 1000): Promise<JobView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await getJob(rest, uuid);
    if (reached(job, percent) || ['finished', 'cancelled', 'aborted'].includes(job.state)) return job;
    if (Date.now() > deadline) throw new SimError('SIM_TIMEOUT', `job ${uuid}: ${job.progress.percentComplete} % after ${timeoutMs} ms (waiting for ${percent} %)`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** Every device's result of a job (all pages). */
export async function jobDeviceResults(rest: RestClient, uuid: string): Promise<JobDeviceResult[]> {
  const all: JobDeviceResult[] = [];
  let cursor: string | undefined;
  do {
    const page = await rest.json<{ items: JobDeviceResult[]; nextCursor?: string | null }>(
      'GET',
      `/api/jobs/${uuid}/devices?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
    );
    all.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return all;
}
