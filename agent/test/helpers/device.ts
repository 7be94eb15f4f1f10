import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Agent, type AgentExit, createAgent } from '../../src/agent.js';
import { type ConfigInput, resolveConfig } from '../../src/config.js';
import type { ConnectionProfile } from '../../src/connection-profile.js';
import { saveProfile } from '../../src/connection/profile-store.js';
import type { Logger } from '../../src/logger.js';
import type { DeviceOptions } from '../../src/platform/device-model.js';
import { createEmulatedPlatform } from '../../src/platform/emulated.js';
import type { Faults } from '../../src/platform/faults.js';
import { createMemoryPlatform, type MemoryPlatform } from '../../src/platform/memory.js';
import type { Platform } from '../../src/platform/platform.js';

export type PlatformKind = 'emulated' | 'memory';

/** Fast settings for tests. */
export const TEST_CONFIG: ConfigInput = {
  bootDelayMaxSec: 0,
  backoffBaseMs: 50,
  backoffMaxMs: 500,
  authBackoffMinSec: 1,
  authBackoffMaxSec: 2,
  downloadRetries: 3,
  downloadRetryBaseMs: 20,
  downloadStallSec: 1,
  downloadMinBytesPerSec: 1024,
  healthCheckTimeoutSec: 15,
  reportResendSec: 1,
  stagingReserveBytes: 0,
  helloTimeoutSec: 5,
};

export async function tempDir(prefix = 'agent-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/**
 * One emulated router in-process: an agent on an emulated (disk) or memory platform, restarted on
 * the same platform after every reboot (`reboot.durationMs` honoured), like the CLI's supervisor.
 */
export class TestDevice {
  readonly kind: PlatformKind;
  readonly dir: string;
  readonly profile: ConnectionProfile;
  config: ConfigInput;
  faults: Faults;
  deviceOptions: DeviceOptions;
  platform!: Platform;
  agent!: Agent;
  boots = 0;
  exits: AgentExit[] = [];
  #memory: MemoryPlatform | undefined;
  #loop: Promise<void> | undefined;
  #stopped = false;
  logger: Logger | undefined;

  constructor(kind: PlatformKind, dir: string, profile: ConnectionProfile, config: ConfigInput = {}, faults: Faults = {}, deviceOptions: DeviceOptions = {}) {
    this.kind = kind;
    this.dir = dir;
    this.profile = profile;
    this.config = { ...TEST_CONFIG, ...config };
    this.faults = faults;
    this.deviceOptions = deviceOptions;
  }

  async #powerOn(): Promise<Platform> {
    if (this.kind === 'memory') {
      if (!this.#memory) {
        this.#memory = await createMemoryPlatform({ faults: this.faults, ...this.deviceOptions });
      } else await this.#memory.powerOn();
      return this.#memory;
    }
    return createEmulatedPlatform({ dataDir: this.dir, faults: this.faults, ...this.deviceOptions });
  }

  /** Powers on and starts the agent; keeps restarting it after reboots until `stop`. */
  async start(): Promise<void> {
    await this.#boot();
    this.#loop = (async () => {
      for (;;) {
        const exit = await this.agent.done;
        this.exits.push(exit);
        if (this.#stopped || exit.reason !== 'reboot') return;
        // The emulated reboot's duration (a fault setting), not a wait for something to happen.
        await new Promise((r) => setTimeout(r, this.faults.reboot?.durationMs ?? 0));
        if (this.#stopped) return;
        await this.#boot();
      }
    })();
  }

  async #boot(): Promise<void> {
    this.platform = await this.#powerOn();
    this.boots++;
    if (this.boots === 1) await saveProfile(this.platform.storage, this.profile);
    this.agent = createAgent(resolveConfig({ ...this.config, dataDir: this.dir }), this.platform, {
      ...(this.logger ? { logger: this.logger } : {}),
    });
    await this.agent.start();
  }

  /** Simulates a power cut of an in-process agent: stop it without a goodbye, then power on again. */
  async restart(faults?: Faults): Promise<void> {
    this.#stopped = true;
    await this.agent.stop();
    await this.#loop;
    this.#stopped = false;
    if (faults) this.faults = faults;
    if (this.kind === 'memory' && faults) this.#memory = undefined;
    await this.start();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.agent?.stop();
    await this.#loop;
  }

  async dispose(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  }
}
