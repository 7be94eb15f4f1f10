import type { Installer } from '../installers/installer.js';
import type { DownloadSource } from '../jobs/download.js';
import type { FaultInjector } from './faults.js';

/**
 * The Platform port: every side effect of the agent core goes through it, so the same core runs on
 * an emulated router on disk (`createEmulatedPlatform`), in memory by the thousand
 * (`createMemoryPlatform`, the simulator) and, later, on a real router. One contract test suite
 * (agent/test/platform-contract.test.ts) runs against every implementation.
 */
export interface Platform {
  /** `emulated`, `memory`, or the name of a real platform. */
  readonly kind: string;
  readonly clock: Clock;
  readonly random: RandomSource;
  /** Small durable files: journal, outbox, key/value state. */
  readonly storage: Storage;
  /** Large files: downloaded packets and the payloads extracted from them. */
  readonly staging: Staging;
  readonly firmware: FirmwarePort;
  readonly configuration: ConfigurationPort;
  readonly certificates: CertificatePort;
  readonly containers: ContainerPort;
  readonly network: NetworkPort;
  readonly system: SystemPort;
  /** Fault injection (tests, simulator): the named fault points. Empty on a production platform. */
  readonly faults: FaultInjector;
  /**
   * Wraps parts of the agent in this platform's fault behaviours (failing or slow installs, a
   * faulty download link). The emulated and memory platforms set it; a production platform leaves
   * it out and the agent uses its parts as they are.
   */
  readonly decorate?: PlatformDecorators;
  /** Releases what the platform holds (file handles, listeners). The platform's data stays. */
  close(): Promise<void>;
}

/** Decorators a platform applies to the agent's parts (`faultDecorators` for the test platforms). */
export interface PlatformDecorators {
  installer(installer: Installer): Installer;
  downloadSource(source: DownloadSource): DownloadSource;
}

// ── time ─────────────────────────────────────────────────────────────────────────────────

export interface Timer {
  cancel(): void;
}

/** Injected time. `now` is wall-clock ms since the epoch (may be skewed by a fault). */
export interface Clock {
  now(): number;
  /** Runs `fn` once after `ms` (≥ 0). Implementations may share one OS timer among many agents. */
  setTimer(ms: number, fn: () => void): Timer;
}

export interface RandomSource {
  /** Uniform in [0, 1). */
  next(): number;
  /** A random id usable as a message id (UUID form). */
  uuid(): string;
}

// ── storage ──────────────────────────────────────────────────────────────────────────────

/**
 * A flat namespace of small files (names: `[a-z0-9._-]+`). `write` is atomic and durable: after a
 * power cut the file holds the old or the new content, never a mix (temp file, fsync, rename, fsync
 * directory on disk). `append` is durable once it resolves; a torn last record is possible after a
 * power cut and readers must tolerate it.
 */
export interface Storage {
  read(name: string): Promise<Uint8Array | undefined>;
  write(name: string, data: Uint8Array): Promise<void>;
  append(name: string, data: Uint8Array): Promise<void>;
  remove(name: string): Promise<void>;
  list(prefix?: string): Promise<string[]>;
}

/** Appends to one staged file. `sync` makes what was written durable. */
export interface StagingWriter {
  write(chunk: Uint8Array): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Staging area for packets and extracted payloads. Names are relative paths (`job-1/packet.tar`,
 * `job-1/payload/firmware.bin`).
 */
export interface Staging {
  /** Size in bytes, or undefined when the file does not exist. */
  size(name: string): Promise<number | undefined>;
  /** Opens for appending after truncating to `offset` (0 = start over). */
  openWriter(name: string, offset: number): Promise<StagingWriter>;
  /** Streams the content from `offset`. */
  read(name: string, offset?: number): AsyncIterable<Uint8Array>;
  /** Local file path, when the staging area is a directory on disk (lets readers use the file directly). */
  localPath(name: string): string | undefined;
  /** Removes a file or a whole directory (`job-1`). */
  remove(name: string): Promise<void>;
  /** Bytes still available for staging (free space or quota). */
  freeBytes(): Promise<number>;
}

// ── firmware and boot control ────────────────────────────────────────────────────────────

export type Slot = 'a' | 'b';

export interface FirmwareState {
  /** The slot running now. */
  booted: Slot;
  /** The slot the boot loader falls back to (the last committed one). */
  committed: Slot;
  /** The slot the next boot tries once, if set (cleared by that boot). */
  trial: Slot | undefined;
  /** Firmware version installed in each slot. */
  versions: Partial<Record<Slot, string>>;
}

/**
 * A/B firmware slots with a one-shot trial boot: `setTrialBoot(b)`, reboot → b runs uncommitted; a
 * second reboot without `commit` returns to the committed slot. The running version is
 * `versions[booted]`.
 */
export interface FirmwarePort {
  state(): Promise<FirmwareState>;
  /** Writes an image into a slot that is not booted (durably). Returns the SHA-256 and size written. */
  writeSlot(slot: Slot, image: AsyncIterable<Uint8Array>, meta: { version: string }): Promise<{ sha256: string; size: number }>;
  setTrialBoot(slot: Slot): Promise<void>;
  clearTrialBoot(): Promise<void>;
  /** Makes the booted slot the committed one. */
  commit(): Promise<void>;
}

// ── configuration ────────────────────────────────────────────────────────────────────────

export interface RunningConfiguration {
  /** Version of the active profile (from the section's VERSION), if known. */
  version?: string;
  content: Uint8Array;
}

/**
 * The router configuration. The emulated router's format is `key=value` lines; the key `uplink`
 * set to `down` cuts the router off its uplink (used to test the connectivity safety net).
 */
export interface ConfigurationPort {
  running(): Promise<RunningConfiguration>;
  /** Why `content` is not a valid configuration profile, or undefined when it is (checked before the commit point). */
  validate(content: Uint8Array): string | undefined;
  /** Stores and activates a configuration profile atomically. */
  apply(content: Uint8Array, version?: string): Promise<void>;
  /** Applies CLI commands (`set KEY VALUE`, `unset KEY`) to the running configuration. */
  applyCommands(text: string): Promise<void>;
  /** Saves the running configuration under `id` (a backup). */
  snapshot(id: string): Promise<void>;
  /** Activates the configuration saved under `id`. */
  restore(id: string): Promise<void>;
  dropSnapshot(id: string): Promise<void>;
}

// ── certificates ─────────────────────────────────────────────────────────────────────────

export interface StoredCertificate {
  /** Stable name (e.g. `vpn-client`). */
  name: string;
  certPem: string;
  /** Private key (PEM), for certificates the router itself presents. Never reported. */
  keyPem?: string;
  isCa: boolean;
}

export interface CertificatePort {
  list(): Promise<StoredCertificate[]>;
  /** Replaces the whole store atomically: the old set or the new set, never a mix. */
  replaceAll(next: readonly StoredCertificate[]): Promise<void>;
}

// ── containers ───────────────────────────────────────────────────────────────────────────

export type ContainerRunState = 'running' | 'stopped' | 'failed' | 'installing';

export interface ContainerRecord {
  name: string;
  /** Active version. */
  version: string;
  state: ContainerRunState;
  /** Versions whose image is on the device (the previous one is kept for rollback). */
  images: string[];
  /** The container configuration (JSON object) last applied. */
  config?: Record<string, unknown>;
}

export interface ContainerPort {
  list(): Promise<ContainerRecord[]>;
  get(name: string): Promise<ContainerRecord | undefined>;
  /** Stores an image for `name@version` without activating it. */
  storeImage(name: string, version: string, image: AsyncIterable<Uint8Array>): Promise<void>;
  removeImage(name: string, version: string): Promise<void>;
  /** Writes the record (activate a version, start, stop, configure); `undefined` removes the container. */
  put(name: string, record: ContainerRecord | undefined): Promise<void>;
}

// ── network and system ───────────────────────────────────────────────────────────────────

export interface LinkInfo {
  type: 'ethernet' | 'lte' | '5g' | 'wifi' | 'other';
  up: boolean;
  signalQuality?: number;
  rssiDbm?: number;
}

export interface NetworkPort {
  link(): LinkInfo;
  /** Whether the management server can be reached at all (emulation of the uplink and its faults). */
  reachable(): boolean;
  /** Called when the link or reachability changes. Returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
}

/** Raw system figures. Anything may be in here: the analytics privacy filter decides what leaves. */
export type RawMetrics = Record<string, unknown>;

export interface DeviceIdentity {
  model: string;
  serialNumber?: string;
  hardwareRevision?: string;
}

export interface SystemPort {
  identity(): DeviceIdentity;
  /** Changes on every boot. */
  bootId(): string;
  /** Boots so far (including this one). */
  bootCount(): number;
  uptimeSec(): number;
  metrics(): RawMetrics;
  location(): { lat: number; lon: number; accuracyM?: number } | undefined;
  /**
   * Reboots the device. Resolves once the reboot is committed (boot control updated); the agent then
   * stops with reason `reboot` and the owner (CLI supervisor, simulator) starts it again.
   */
  reboot(): Promise<void>;
  /** Fault injection: loses power now. On disk: SIGKILL of this process. In memory: throws PowerCut. */
  powerCut(): never;
}
