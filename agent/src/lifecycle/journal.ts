import { Buffer } from 'node:buffer';
import type { JobExecutionState, JobOfferBody } from '@router-fleet/protocol';
import type { Storage, Slot } from '../platform/platform.js';
import type { UpdateState } from './update-table.js';

/** Version of the journal record format. A record of another version is not trusted. */
export const JOURNAL_VERSION = 1;
const FILE = 'journal.json';

export type SectionPhase = 'pending' | 'installing' | 'installed' | 'committed' | 'rolled-back';

/** One MANIFEST section of the job, and how far it got. */
export interface SectionRecord {
  index: number;
  fileName: string;
  fileType: string;
  sha256: string;
  size: number;
  version?: string;
  extra: { key: string; value: string }[];
  phase: SectionPhase;
  needsReboot?: boolean;
  /** The installer's own durable notes (backup ids, previous versions, target slot). */
  data: Record<string, unknown>;
}

export type TerminalJobState = 'succeeded' | 'failed' | 'rejected' | 'cancelled' | 'timed-out';

/** Where one job execution stands. Written before every side effect and every transition. */
export interface JobRecord {
  v: typeof JOURNAL_VERSION;
  executionId: string;
  jobId: string;
  offer: JobOfferBody;
  state: UpdateState;
  /** Transitions so far (loop breaker). */
  transitions: number;
  /** Agent starts that found this job unfinished (loop breaker for crash/reboot loops). */
  resumes: number;
  enteredAt: number;
  /** Durable download offset (bytes fsynced to staging). */
  downloadOffset?: number;
  /** After verification: packet id and sections in MANIFEST order. */
  packet?: { packetId?: string; sections: SectionRecord[] };
  /** Set before rebooting into new firmware: the boot id that must change. */
  reboot?: { fromBootId: string };
  /** Set before a reboot during rollback. */
  rollbackReboot?: { fromBootId: string };
  /** Session epoch when installing began: the health check may require a newer session. */
  installEpoch?: number;
  /** Health check bookkeeping (absolute deadline on the device clock, session epoch at the start). */
  health?: {
    deadline: number;
    epoch: number;
    newSession: boolean;
    /** The session's licensing rejections when the check began (0 after a restart: every one is newer). */
    rejections?: number;
  };
  /** A cancel arrived after the commit point. */
  cancelRefused?: boolean;
  lastReported?: JobExecutionState;
  result?: { state: TerminalJobState; errorCode?: string; errorMessage?: string };
  /** Id of the terminal job-progress message (stable across resends and restarts). */
  terminalMessageId?: string;
  /** Firmware slot the job installs into, if any. */
  targetSlot?: Slot;
}

/**
 * The JSON text of each offer a record was saved with. An offer is never changed once taken, and it
 * is most of a record's text: serializing it again on every save (three per offer taken) was a
 * visible part of a simulator process's time while a fleet's offers arrived. Keyed by the offer
 * object, so a record loaded from the journal (a new object) is serialized afresh once.
 */
const offerText = new WeakMap<JobOfferBody, string>();

/** The record's JSON text, the offer's part taken from `offerText` (the same text `JSON.stringify` gives). */
export function journalText(record: JobRecord): string {
  const { offer, ...rest } = record;
  let text = offerText.get(offer);
  if (text === undefined) {
    text = JSON.stringify(offer);
    offerText.set(offer, text);
  }
  const others = JSON.stringify(rest);
  return others.length > 2 ? `{"offer":${text},${others.slice(1)}` : `{"offer":${text}}`;
}

export type JournalLoad = { kind: 'empty' } | { kind: 'record'; record: JobRecord } | { kind: 'corrupt'; executionId?: string; reason: string };

/** The journal of the active job: one durable file, replaced atomically. */
export class Journal {
  readonly #storage: Storage;
  /** The record to write next (a save asked for while a write is under way). */
  #latest: JobRecord | undefined;
  /** The writes under way, resolved when the newest record asked for is durable. */
  #flushing: Promise<void> | undefined;
  constructor(storage: Storage) {
    this.#storage = storage;
  }

  async load(): Promise<JournalLoad> {
    const bytes = await this.#storage.read(FILE);
    if (!bytes) return { kind: 'empty' };
    let value: unknown;
    try {
      value = JSON.parse(Buffer.from(bytes).toString('utf8'));
    } catch {
      return { kind: 'corrupt', reason: 'not JSON' };
    }
    const record = value as Partial<JobRecord>;
    const executionId = typeof record.executionId === 'string' ? record.executionId : undefined;
    if (record.v !== JOURNAL_VERSION) {
      return { kind: 'corrupt', reason: `journal version ${String(record.v)}`, ...(executionId ? { executionId } : {}) };
    }
    if (!executionId || typeof record.state !== 'string' || typeof record.offer !== 'object') {
      return { kind: 'corrupt', reason: 'incomplete record', ...(executionId ? { executionId } : {}) };
    }
    return { kind: 'record', record: record as JobRecord };
  }

  /**
   * Makes `record` durable as it is now or as it is later. Saves asked for while a write is under
   * way are folded into one more write of the newest record, and every caller resolves only once
   * that one is done: the runner, which goes on only after its save, then never outruns a change
   * made meanwhile by another part (job states reported after a welcome), and an older record
   * can never land after a newer one.
   */
  save(record: JobRecord): Promise<void> {
    this.#latest = record;
    this.#flushing ??= (async () => {
      try {
        while (this.#latest) {
          const next = this.#latest;
          this.#latest = undefined;
          await this.#storage.write(FILE, Buffer.from(journalText(next)));
        }
      } finally {
        this.#flushing = undefined;
      }
    })();
    return this.#flushing;
  }

  /** Removes the journal once a write under way is done (the job is finished: nothing newer to keep). */
  async remove(): Promise<void> {
    this.#latest = undefined;
    // A failed save was reported to its caller; the file goes either way.
    await this.#flushing?.catch(() => {});
    await this.#storage.remove(FILE);
  }
}
