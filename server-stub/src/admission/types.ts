import type { AccountUuid, DeviceRowId, DeviceUuid } from '../ids.js';
import type { RejectReason } from './decide.js';

/**
 * The admission service's public surface, called by the control channel on a device's hello and
 * disconnect, and listened to for changes the channel must tell open connections about.
 */
export interface AdmitRequest {
  /** The device identifies itself by serial number or by the uuid from its connection profile. */
  readonly serialNumber?: string;
  readonly deviceUuid?: string;
  /** The device secret from its connection profile. */
  readonly credential: string;
  /** When the connection arrived (defaults to the server clock). Orders the line for licences. */
  readonly connectedAt?: number;
}

export type DeniedReason = 'unknown-device' | 'bad-credential';

export type AdmitResult =
  | {
    readonly outcome: 'managed';
    readonly deviceUuid: DeviceUuid;
    /** Opaque per-device key for `presence.seen(deviceKey, at)` (avoids a lookup per message). */
    readonly deviceKey: DeviceRowId;
    readonly accountUuid: AccountUuid;
    /** `new` seat, `reclaimed` within the grace period, or `kept` (already connected). */
    readonly lease: 'new' | 'reclaimed' | 'kept';
  }
  | {
    /** Connected but beyond the licence limit: visible, gets no jobs, waits for a seat. */
    readonly outcome: 'unmanaged';
    readonly deviceUuid: DeviceUuid;
    readonly deviceKey: DeviceRowId;
    readonly accountUuid: AccountUuid;
    readonly reason: 'licence-limit';
  }
  | {
    /** No free licence: the channel refuses the device, which retries after `retryAfterSec`. */
    readonly outcome: 'rejected';
    readonly deviceUuid: DeviceUuid;
    readonly deviceKey: DeviceRowId;
    readonly accountUuid: AccountUuid;
    readonly reason: RejectReason;
    readonly retryAfterSec: number;
  }
  | {
    /** Authentication failed: unknown device or wrong credential. The device backs off for long. */
    readonly outcome: 'denied';
    readonly reason: DeniedReason;
    readonly retryAfterSec: number;
  };

export type AdmissionOutcome = AdmitResult['outcome'];

/** Devices whose admission changed while connected (licence expiry, activation, freed seats). */
export interface AdmissionChange {
  /** Account uuid. */
  readonly accountUuid: AccountUuid;
  readonly deviceUuids: readonly DeviceUuid[];
  readonly at: number;
  readonly cause: 'licences-changed' | 'seat-freed';
}

export interface AdmissionEventMap {
  /** These connected devices lost their seat: tell them they are unmanaged. */
  unmanaged: [AdmissionChange];
  /** These connected devices got a seat: tell them they are managed again. */
  managed: [AdmissionChange];
}

export interface SweepReport {
  readonly accounts: number;
  readonly dropped: number;
  readonly managed: number;
  readonly unmanaged: number;
  readonly events: number;
}

/**
 * Why connections ended: `disconnect`, the device's link went (its seat gets the grace period);
 * `server-outage`, the server lost the links itself (a bucket client lost the MQTT broker; the
 * seats are held, admission/seat-hold.ts).
 */
export type ReleaseCause = 'disconnect' | 'server-outage';
