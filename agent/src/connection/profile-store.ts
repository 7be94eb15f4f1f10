import { Buffer } from 'node:buffer';
import { type ConnectionProfile, parseConnectionProfile } from '../connection-profile.js';
import { AgentError } from '../errors.js';
import type { ProfileStore } from '../installers/installer.js';
import type { Storage } from '../platform/platform.js';

export const PROFILE_FILE = 'connection-profile.json';
const PREVIOUS_FILE = 'connection-profile.previous.json';

/** Writes the profile (atomic; the storage is private to the agent: mode 0600 on disk). */
export async function saveProfile(storage: Storage, profile: ConnectionProfile): Promise<void> {
  await storage.write(PROFILE_FILE, Buffer.from(`${JSON.stringify(profile, null, 2)}\n`));
}

export async function loadProfile(storage: Storage, allowInsecure: boolean, file = PROFILE_FILE): Promise<ConnectionProfile | undefined> {
  const bytes = await storage.read(file);
  if (!bytes) return undefined;
  const parsed = parseConnectionProfile(bytes, { allowInsecure });
  if (!parsed.ok) throw new AgentError('AGENT_PROFILE_INVALID', `${file}: ${parsed.errors.join('; ')}`);
  return parsed.profile;
}

/** The connection profile in use, with the previous one kept during a re-provisioning job. */
export class StoredProfiles implements ProfileStore {
  readonly #storage: Storage;
  readonly #allowInsecure: boolean;
  #current: ConnectionProfile;

  constructor(storage: Storage, current: ConnectionProfile, allowInsecure: boolean) {
    this.#storage = storage;
    this.#current = current;
    this.#allowInsecure = allowInsecure;
  }

  current(): ConnectionProfile {
    return this.#current;
  }

  async replace(next: ConnectionProfile, keepPrevious: boolean): Promise<void> {
    if (keepPrevious && !(await this.#storage.read(PREVIOUS_FILE))) {
      await this.#storage.write(PREVIOUS_FILE, Buffer.from(JSON.stringify(this.#current)));
    }
    await saveProfile(this.#storage, next);
    this.#current = next;
  }

  previous(): Promise<ConnectionProfile | undefined> {
    return loadProfile(this.#storage, this.#allowInsecure, PREVIOUS_FILE);
  }

  async restorePrevious(): Promise<void> {
    const previous = await this.previous();
    if (!previous) return;
    await saveProfile(this.#storage, previous);
    this.#current = previous;
    await this.#storage.remove(PREVIOUS_FILE);
  }

  async dropPrevious(): Promise<void> {
    await this.#storage.remove(PREVIOUS_FILE);
  }
}
