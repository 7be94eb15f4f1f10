import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { AgentError } from '../errors.js';
import type { FaultInjector } from './faults.js';
import type {
  CertificatePort,
  Clock,
  ConfigurationPort,
  ContainerPort,
  ContainerRecord,
  DeviceIdentity,
  FirmwarePort,
  FirmwareState,
  LinkInfo,
  NetworkPort,
  RandomSource,
  RawMetrics,
  RunningConfiguration,
  Slot,
  StoredCertificate,
  Storage,
  SystemPort,
} from './platform.js';

/**
 * The backing store of an emulated device: durable blobs by key (`device/boot.json`, …). On disk
 * every key is a file written atomically; in memory a Map. `putStream` stores large images (the
 * memory backend keeps only their hash and size: simulated routers need no firmware bytes).
 */
export interface BlobStore extends Storage {
  putStream(key: string, source: AsyncIterable<Uint8Array>): Promise<{ sha256: string; size: number }>;
}

/** What an emulated router looks like when it is first powered on. */
export interface DeviceOptions {
  model?: string;
  serialNumber?: string;
  hardwareRevision?: string;
  /** Firmware version in slot a on first power-on. Default `1.0.0`. */
  firmwareVersion?: string;
  /** Configuration content on first power-on. Default `hostname=router\nuplink=up\n`. */
  configuration?: string;
  link?: LinkInfo;
  /** Raw metrics source (tests seed it with data that must never leave the router). */
  metrics?: () => RawMetrics;
  location?: { lat: number; lon: number; accuracyM?: number };
}

interface BootRecord {
  committed: Slot;
  trial?: Slot;
  booted: Slot;
  bootCount: number;
  bootId: string;
}

interface SlotMeta {
  version: string;
  sha256: string;
  size: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const json = (value: unknown) => enc.encode(`${JSON.stringify(value)}\n`);

async function readJson<T>(blobs: Storage, key: string): Promise<T | undefined> {
  const bytes = await blobs.read(key);
  if (!bytes) return undefined;
  try {
    return JSON.parse(dec.decode(bytes)) as T;
  } catch {
    return undefined;
  }
}

/** Parses the emulated `key=value` configuration format. Returns undefined when it is not one. */
export function parseEmulatedConfiguration(content: Uint8Array): Map<string, string> | undefined {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(content);
  } catch {
    return undefined;
  }
  const map = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) return undefined;
    const key = line.slice(0, eq);
    if (!/^[A-Za-z0-9_.-]+$/.test(key)) return undefined;
    map.set(key, line.slice(eq + 1));
  }
  return map;
}

function serializeConfiguration(map: Map<string, string>): Uint8Array {
  return enc.encode([...map].map(([k, v]) => `${k}=${v}\n`).join(''));
}

/** Applies `set KEY VALUE` / `unset KEY` lines (blank lines and `#` comments ignored). */
export function applyCliCommands(map: Map<string, string>, text: string): Map<string, string> {
  const next = new Map(map);
  let lineNo = 0;
  for (const raw of text.split('\n')) {
    lineNo++;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(set|unset)\s+([A-Za-z0-9_.-]+)(?:\s+(.*))?$/.exec(line);
    if (!m || (m[1] === 'set' && m[3] === undefined)) {
      throw new AgentError('AGENT_CONFIGURATION_INVALID', `line ${lineNo} is not "set KEY VALUE" or "unset KEY"`);
    }
    if (m[1] === 'set') next.set(m[2]!, m[3]!);
    else next.delete(m[2]!);
  }
  return next;
}

/** The emulated device: boot control, configuration, certificates, containers, network. */
export class DeviceModel {
  readonly #blobs: BlobStore;
  readonly #clock: Clock;
  readonly #random: RandomSource;
  readonly #faults: FaultInjector;
  readonly #options: DeviceOptions;
  #boot!: BootRecord;
  #identity!: DeviceIdentity;
  #bootedAt = 0;
  #uplinkUp = true;
  #listeners: Set<() => void> | undefined;
  rebootRequested = false;

  /** Power cut of this platform (SIGKILL on disk, PowerCut in memory). */
  readonly powerCut: () => never;

  constructor(
    blobs: BlobStore,
    clock: Clock,
    random: RandomSource,
    faults: FaultInjector,
    options: DeviceOptions,
    powerCut: () => never,
  ) {
    this.powerCut = powerCut;
    this.#blobs = blobs;
    this.#clock = clock;
    this.#random = random;
    this.#faults = faults;
    this.#options = options;
  }

  /** Power-on: the boot loader picks the slot (trial once, else committed), a new boot id is drawn. */
  async powerOn(): Promise<void> {
    this.rebootRequested = false;
    let identity = await readJson<DeviceIdentity>(this.#blobs, 'device/identity.json');
    if (!identity) {
      identity = {
        model: this.#options.model ?? 'EMU-1',
        ...(this.#options.serialNumber ? { serialNumber: this.#options.serialNumber } : {}),
        ...(this.#options.hardwareRevision ? { hardwareRevision: this.#options.hardwareRevision } : {}),
      };
      await this.#blobs.write('device/identity.json', json(identity));
    }
    this.#identity = identity;
    let boot = await readJson<BootRecord>(this.#blobs, 'device/boot.json');
    if (!boot) {
      const version = this.#options.firmwareVersion ?? '1.0.0';
      const image = enc.encode(`emulated firmware ${version}\n`);
      const written = await this.#blobs.putStream('device/slot-a.img', (async function* () {
        yield image;
      })());
      await this.#blobs.write('device/slot-a.json', json({ version, ...written } satisfies SlotMeta));
      await this.#blobs.write(
        'device/config-running.json',
        json({ content: Buffer.from(this.#options.configuration ?? 'hostname=router\nuplink=up\n').toString('base64') }),
      );
      boot = { committed: 'a', booted: 'a', bootCount: 0, bootId: '' };
    }
    let booted = boot.committed;
    if (boot.trial && !this.#faults.faults.reboot?.bootFails) booted = boot.trial;
    boot = { committed: boot.committed, booted, bootCount: boot.bootCount + 1, bootId: this.#random.uuid() };
    await this.#blobs.write('device/boot.json', json(boot));
    this.#boot = boot;
    this.#bootedAt = this.#clock.now();
    await this.#refreshLink();
  }

  get boot(): Readonly<BootRecord> {
    return this.#boot;
  }

  get identity(): DeviceIdentity {
    return this.#identity;
  }

  uptimeSec(): number {
    return Math.max(0, Math.floor((this.#clock.now() - this.#bootedAt) / 1000));
  }

  async #saveBoot(next: BootRecord): Promise<void> {
    await this.#blobs.write('device/boot.json', json(next));
    this.#boot = next;
  }

  async #refreshLink(): Promise<void> {
    const running = await this.#running();
    const map = parseEmulatedConfiguration(running.content);
    const up = map?.get('uplink') !== 'down';
    const before = this.#uplinkUp;
    this.#uplinkUp = up;
    if (before !== up) this.#emit();
  }

  #emit(): void {
    if (this.#listeners) for (const listener of [...this.#listeners]) listener();
  }

  async #running(): Promise<RunningConfiguration> {
    const raw = await readJson<{ version?: string; content: string }>(this.#blobs, 'device/config-running.json');
    if (!raw) return { content: enc.encode('') };
    return { ...(raw.version === undefined ? {} : { version: raw.version }), content: Buffer.from(raw.content, 'base64') };
  }

  async #setRunning(config: RunningConfiguration, key = 'device/config-running.json'): Promise<void> {
    await this.#blobs.write(
      key,
      json({
        ...(config.version === undefined ? {} : { version: config.version }),
        content: Buffer.from(config.content).toString('base64'),
      }),
    );
  }

  // Ports are small adapter objects whose methods live on prototypes: thousands of simulated
  // devices share the code, each holds a handful of pointers.
  readonly firmware: FirmwarePort = new FirmwareAdapter(this);
  readonly configuration: ConfigurationPort = new ConfigurationAdapter(this);
  readonly certificates: CertificatePort = new CertificateAdapter(this);
  readonly containers: ContainerPort = new ContainerAdapter(this);
  readonly network: NetworkPort = new NetworkAdapter(this);

  // ── firmware ──────────────────────────────────────────────────────────────────────────

  async fwState(): Promise<FirmwareState> {
    const versions: Partial<Record<Slot, string>> = {};
    for (const slot of ['a', 'b'] as const) {
      const meta = await readJson<SlotMeta>(this.#blobs, `device/slot-${slot}.json`);
      if (meta) versions[slot] = meta.version;
    }
    return { booted: this.#boot.booted, committed: this.#boot.committed, trial: this.#boot.trial, versions };
  }

  async fwWriteSlot(slot: Slot, image: AsyncIterable<Uint8Array>, meta: { version: string }) {
    if (slot === this.#boot.booted) throw new AgentError('AGENT_INSTALL_FAILED', `slot ${slot} is running`);
    if (slot === this.#boot.committed) throw new AgentError('AGENT_INSTALL_FAILED', `slot ${slot} is the fallback`);
    // Invalidate first: a half-written slot must never claim a version.
    await this.#blobs.remove(`device/slot-${slot}.json`);
    const written = await this.#blobs.putStream(`device/slot-${slot}.img`, image);
    await this.#blobs.write(`device/slot-${slot}.json`, json({ version: meta.version, ...written } satisfies SlotMeta));
    return written;
  }

  async fwSetTrialBoot(slot: Slot): Promise<void> {
    const meta = await readJson<SlotMeta>(this.#blobs, `device/slot-${slot}.json`);
    if (!meta) throw new AgentError('AGENT_INSTALL_FAILED', `slot ${slot} holds no firmware`);
    await this.#saveBoot({ ...this.#boot, trial: slot });
  }

  async fwClearTrialBoot(): Promise<void> {
    const { trial: _trial, ...rest } = this.#boot;
    await this.#saveBoot(rest);
  }

  async fwCommit(): Promise<void> {
    const { trial: _trial, ...rest } = this.#boot;
    await this.#saveBoot({ ...rest, committed: this.#boot.booted });
    this.#emit();
  }

  // ── configuration ─────────────────────────────────────────────────────────────────────

  running(): Promise<RunningConfiguration> {
    return this.#running();
  }

  async apply(content: Uint8Array, version?: string): Promise<void> {
    if (!parseEmulatedConfiguration(content)) {
      throw new AgentError('AGENT_CONFIGURATION_INVALID', 'not an emulated configuration (key=value lines)');
    }
    await this.#setRunning({ content, ...(version === undefined ? {} : { version }) });
    await this.#refreshLink();
  }

  async applyCommands(text: string): Promise<void> {
    const running = await this.#running();
    const map = parseEmulatedConfiguration(running.content) ?? new Map<string, string>();
    const next = applyCliCommands(map, text);
    await this.#setRunning({ ...running, content: serializeConfiguration(next) });
    await this.#refreshLink();
  }

  async snapshot(id: string): Promise<void> {
    await this.#setRunning(await this.#running(), `device/config-snap-${id}.json`);
  }

  async restore(id: string): Promise<void> {
    const raw = await readJson<{ version?: string; content: string }>(this.#blobs, `device/config-snap-${id}.json`);
    if (!raw) throw new AgentError('AGENT_ROLLBACK_FAILED', `no configuration backup ${id}`);
    await this.#setRunning({
      ...(raw.version === undefined ? {} : { version: raw.version }),
      content: Buffer.from(raw.content, 'base64'),
    });
    await this.#refreshLink();
  }

  async dropSnapshot(id: string): Promise<void> {
    await this.#blobs.remove(`device/config-snap-${id}.json`);
  }

  // ── certificates and containers ───────────────────────────────────────────────────────

  async certList(): Promise<StoredCertificate[]> {
    return (await readJson<StoredCertificate[]>(this.#blobs, 'device/certificates.json')) ?? [];
  }

  async certReplaceAll(next: readonly StoredCertificate[]): Promise<void> {
    await this.#blobs.write('device/certificates.json', json(next));
  }

  async containerRecords(): Promise<Record<string, ContainerRecord>> {
    return (await readJson<Record<string, ContainerRecord>>(this.#blobs, 'device/containers.json')) ?? {};
  }

  async containerImage(name: string, version: string, image?: AsyncIterable<Uint8Array>): Promise<void> {
    const key = `device/containers/${name}/${version}.img`;
    if (image) await this.#blobs.putStream(key, image);
    else await this.#blobs.remove(key);
  }

  async containerPut(name: string, record: ContainerRecord | undefined): Promise<void> {
    const all = await this.containerRecords();
    if (record) all[name] = record;
    else delete all[name];
    await this.#blobs.write('device/containers.json', json(all));
  }

  // ── network ───────────────────────────────────────────────────────────────────────────

  link(): LinkInfo {
    return { ...(this.#options.link ?? { type: 'ethernet', up: true }), up: this.#uplinkUp };
  }

  reachable(): boolean {
    if (!this.#uplinkUp) return false;
    const faults = this.#faults.faults;
    if (faults.connection?.refuse) return false;
    if (faults.healthCheck?.fail && this.#boot.booted !== this.#boot.committed) return false;
    return true;
  }

  onChange(listener: () => void): () => void {
    this.#listeners ??= new Set();
    const listeners = this.#listeners;
    listeners.add(listener);
    return () => listeners.delete(listener);
  }

  readonly system: SystemPort = new SystemAdapter(this);

  metrics(): RawMetrics {
    return this.#options.metrics?.() ?? {};
  }

  location() {
    return this.#options.location;
  }
}

/** SHA-256 and size of a stream, discarding the bytes (the memory backend's images). */
export async function hashOnly(source: AsyncIterable<Uint8Array>): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of source) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { sha256: hash.digest('hex'), size };
}

class FirmwareAdapter implements FirmwarePort {
  constructor(private readonly m: DeviceModel) {}
  state() {
    return this.m.fwState();
  }

  writeSlot(slot: Slot, image: AsyncIterable<Uint8Array>, meta: { version: string }) {
    return this.m.fwWriteSlot(slot, image, meta);
  }

  setTrialBoot(slot: Slot) {
    return this.m.fwSetTrialBoot(slot);
  }

  clearTrialBoot() {
    return this.m.fwClearTrialBoot();
  }

  commit() {
    return this.m.fwCommit();
  }
}

class ConfigurationAdapter implements ConfigurationPort {
  constructor(private readonly m: DeviceModel) {}
  running() {
    return this.m.running();
  }

  validate(content: Uint8Array) {
    return parseEmulatedConfiguration(content) ? undefined : 'not an emulated configuration (UTF-8 key=value lines)';
  }

  apply(content: Uint8Array, version?: string) {
    return this.m.apply(content, version);
  }

  applyCommands(text: string) {
    return this.m.applyCommands(text);
  }

  snapshot(id: string) {
    return this.m.snapshot(id);
  }

  restore(id: string) {
    return this.m.restore(id);
  }

  dropSnapshot(id: string) {
    return this.m.dropSnapshot(id);
  }
}

class CertificateAdapter implements CertificatePort {
  constructor(private readonly m: DeviceModel) {}
  list() {
    return this.m.certList();
  }

  replaceAll(next: readonly StoredCertificate[]) {
    return this.m.certReplaceAll(next);
  }
}

class ContainerAdapter implements ContainerPort {
  constructor(private readonly m: DeviceModel) {}
  async list() {
    return Object.values(await this.m.containerRecords());
  }

  async get(name: string) {
    return (await this.m.containerRecords())[name];
  }

  storeImage(name: string, version: string, image: AsyncIterable<Uint8Array>) {
    return this.m.containerImage(name, version, image);
  }

  removeImage(name: string, version: string) {
    return this.m.containerImage(name, version);
  }

  put(name: string, record: ContainerRecord | undefined) {
    return this.m.containerPut(name, record);
  }
}

class NetworkAdapter implements NetworkPort {
  constructor(private readonly m: DeviceModel) {}
  link() {
    return this.m.link();
  }

  reachable() {
    return this.m.reachable();
  }

  onChange(listener: () => void) {
    return this.m.onChange(listener);
  }
}

class SystemAdapter implements SystemPort {
  constructor(private readonly m: DeviceModel) {}
  identity() {
    return this.m.identity;
  }

  bootId() {
    return this.m.boot.bootId;
  }

  bootCount() {
    return this.m.boot.bootCount;
  }

  uptimeSec() {
    return this.m.uptimeSec();
  }

  metrics() {
    return this.m.metrics();
  }

  location() {
    return this.m.location();
  }

  async reboot() {
    this.m.rebootRequested = true;
  }

  powerCut(): never {
    return this.m.powerCut();
  }
}
