import type { AdmissionService } from '../../src/admission/service.js';
import type { AdmissionChange, AdmitResult } from '../../src/admission/types.js';

export interface FakeDevice {
  uuid: string;
  serialNumber: string;
  credential: string;
}

/**
 * Stands in for the control channel: it admits devices on "connect", keeps their open connections,
 * tells them about admission changes the service emits (as the channel will, over the socket) and
 * releases them on "disconnect".
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

  connect(device: FakeDevice, at?: number, credential = device.credential): AdmitResult {
    const result = this.admission.admit({
      serialNumber: device.serialNumber,
      credential,
      ...(at === undefined ? {} : { connectedAt: at }),
    });
    if (result.outcome === 'managed' || result.outcome === 'unmanaged') this.open.set(device.uuid, result.outcome);
    return result;
  }

  disconnect(device: FakeDevice, at?: number): void {
    this.open.delete(device.uuid);
    this.admission.release(device.uuid, at);
  }

  state(device: FakeDevice): 'managed' | 'unmanaged' | 'offline' {
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
