import type { AccountUuid, DeviceUuid } from '../ids.js';

/**
 * Changes that must reach open control-channel sessions (and, for jobs, the dispatchers of the
 * processes that hold them), wherever they are held. In one process
 * the bus delivers at once; in cluster mode (cluster/) every notice travels through the primary,
 * which hands it to every worker, and each worker tells the sessions it holds.
 */
export type Notice =
  | {
    readonly kind: 'admission';
    readonly state: 'managed' | 'unmanaged';
    readonly accountUuid: AccountUuid;
    readonly deviceUuids: readonly DeviceUuid[];
    readonly cause: 'licences-changed' | 'seat-freed';
  }
  | {
    readonly kind: 'settings';
    readonly accountUuid: AccountUuid;
    readonly analyticsConsent: boolean;
  }
  | {
    /** The trust anchors devices must have changed: of one account (its uuid), or of all (`null`). */
    readonly kind: 'trust-anchors';
    readonly accountUuid: AccountUuid | null;
  }
  | {
    /** Devices deleted over the API: their sessions end (close code AUTH_FAILED, the credential is gone). */
    readonly kind: 'device-deleted';
    readonly deviceUuids: readonly DeviceUuid[];
  }
  | {
    /**
     * A job became runnable (created or resumed): every process dispatches to the devices it holds
     * now, not at its next job tick (up to a second later: with two workers, half of a fleet's offers
     * waited for it). Sessions are not told anything.
     */
    readonly kind: 'jobs-runnable';
  };

export type NoticeListener = (notice: Notice) => void;

export interface NoticeBus {
  publish(notice: Notice): void;
  subscribe(listener: NoticeListener): () => void;
}

/** Delivery to listeners in this process; the cluster buses build on it. */
export class LocalNoticeBus implements NoticeBus {
  readonly #listeners = new Set<NoticeListener>();

  publish(notice: Notice): void {
    this.deliver(notice);
  }

  deliver(notice: Notice): void {
    for (const l of this.#listeners) l(notice);
  }

  subscribe(listener: NoticeListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
