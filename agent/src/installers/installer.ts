import type { ConnectionProfile } from '../connection-profile.js';
import type { SectionRecord } from '../lifecycle/journal.js';
import type { Logger } from '../logger.js';
import type { Platform } from '../platform/platform.js';

/** What an installer gets for one section. */
export interface InstallContext {
  readonly platform: Platform;
  readonly log: Logger;
  readonly executionId: string;
  /** The section; `data` holds the installer's durable notes (persist with `save`). */
  readonly section: SectionRecord;
  /** Persists the journal (section phase and data) before the next side effect. */
  save(): Promise<void>;
  /**
   * The section's verified bytes, streamed from staging. The SHA-256 is checked while streaming:
   * the stream throws AGENT_STAGING_TAMPERED at its end when the bytes differ from the verified ones.
   */
  payload(): AsyncIterable<Uint8Array>;
  /** The whole payload in memory (for small sections), hash-checked; throws when larger than `max`. */
  readPayload(max?: number): Promise<Buffer>;
  /** Payloads of the packet's CaCertificate sections (so a certificate may chain to a CA in the same packet). */
  packetCaPems(): Promise<string[]>;
  /** The connection profile store (re-provisioning). */
  readonly profiles: ProfileStore;
  /** Asks the session to drop the connection and dial again (new profile). */
  reconnect(): void;
  /** Aborted when the agent stops: a step may give up (it runs again after the restart). */
  readonly signal: AbortSignal;
}

/** The persisted connection profile, and the previous one kept during a re-provisioning. */
export interface ProfileStore {
  current(): ConnectionProfile;
  replace(next: ConnectionProfile, keepPrevious: boolean): Promise<void>;
  previous(): Promise<ConnectionProfile | undefined>;
  restorePrevious(): Promise<void>;
  dropPrevious(): Promise<void>;
}

/**
 * One interface for every payload type (after Mender's update modules): the same steps in the same
 * order for firmware, configuration, certificates, containers and connection profiles.
 *
 * - `download`: the payload was downloaded and verified; check it can be installed (before the
 *   commit point: a failure rejects the job and nothing changes).
 * - `install`: apply it, recoverably (inactive slot, backup first, previous version kept).
 * - `needsReboot`: whether the device must reboot before the health check.
 * - `requiresNewSession`: whether the health check needs a new session (not just a round trip).
 * - `commit`: make it permanent (after the health check).
 * - `rollback`: undo `install` (also a partial one). `reboot` asks the runner to reboot and call
 *   rollback again afterwards.
 * - `cleanup`: drop temporary data, whatever the result.
 * Every step must be idempotent: after a power cut it may run again.
 */
export interface Installer {
  readonly fileTypes: readonly string[];
  download(ctx: InstallContext): Promise<void>;
  install(ctx: InstallContext): Promise<void>;
  needsReboot(ctx: InstallContext): boolean;
  requiresNewSession?(ctx: InstallContext): boolean;
  commit(ctx: InstallContext): Promise<void>;
  rollback(ctx: InstallContext): Promise<'done' | 'reboot'>;
  cleanup(ctx: InstallContext): Promise<void>;
}

/** The value of an unknown MANIFEST key of the section (e.g. `NAME`, `APPLY`). */
export function sectionExtra(section: SectionRecord, key: string): string | undefined {
  return section.extra.find((f) => f.key === key)?.value;
}
