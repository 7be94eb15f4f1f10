import type { AdmissionService } from '../../src/admission/service.js';
import type { AdmissionChange, AdmitResult } from '../../src/admission/types.js';
import type { DeviceIdentity } from './fake-device.js';

/**
 * Stands in for the control channel in tests of the admission service itself (no sockets, times
 * injected per call): it admits devices on "connect", keeps their open connections, tells them about
 * admission changes the service emits (as the channel does, over the socket) and releases them on
 * "disconnect". Tests of the real channel use `FakeDevice` (fake-device.ts) instead.
 */
export class FakeChannel {
  /** Open connections: device uuid → state the device was last told. */
  readonly open = new Map<string, 'managed' | 'unmanaged'>();
  /** Everything told to devices, in order. */
  readonly told: { deviceUuid: string; state: 'managed' | 'unmanaged' }[] = [];
  readonly #off: () => void;

  constructor(private readonly admission: AdmissionService) {
    const onUnmanaged = (c: AdmissionChange) => this.#tell(c, 'unmanaged');
    const onManaged = (c: AdmissionChange) => this.#tell(c, 'managed');
    admission.events.on('unmanaged', onUnmanaged);
    admission.events.on('managed', onManaged);
    this.#off = () => {
      admission.events.off('unmanaged', onUnmanaged);
      admission.events.off('managed', onManaged);
    };
  }

  connect(device: DeviceIdentity, at?: number, credential = device.credential): AdmitResult {
    const result = this.admission.admit({
      serialNumber: device.serialNumber,
      credential,
      ...(at === undefined ? {} : { connectedAt: at }),
    });
    if (result.outcome === 'managed' || result.outcome === 'unmanaged') this.open.set(device.uuid, result.outcome);
    return result;
  }

  disconnect(device: DeviceIdentity, at?: number): void {
    this.open.delete(device.uuid);
    this.admission.release(device.uuid, at);
  }

  state(device: DeviceIdentity): 'managed' | 'unmanaged' | 'offline' {
    return this.open.get(device.uuid) ?? 'offline';
  }

  close(): void {
    this.#off();
  }

  #tell(change: AdmissionChange, state: 'managed' | 'unmanaged'): void {
    for (const uuid of change.deviceUuids) {
      if (!this.open.has(uuid)) continue;
      this.open.set(uuid, state);
      this.told.push({ deviceUuid: uuid, state });
    }
  }
}
