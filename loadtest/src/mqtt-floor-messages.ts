import { createMessage, encode, type MqttProtocolVersion } from '@router-fleet/protocol';

/** One client of the raw MQTT floor: its account on its broker. */
export interface FloorDevice {
  deviceId: string;
  credential: string;
  /** `mqtt://` or `mqtts://127.0.0.1:PORT` of the broker that holds the device's bucket. */
  url: string;
}

/** The order a floor client process gets (IPC). */
export interface FloorClientsStart {
  type: 'start';
  devices: FloorDevice[];
  /** Clients in flight at once (connect + subscribe + one round trip). */
  window: number;
  /** Source addresses the clients bind to, round robin (so ephemeral ports never run out). */
  sources: string[];
  protocolVersion: MqttProtocolVersion;
  keepaliveSec: number;
  /** PEM CA that verifies the brokers' TLS certificate (for `mqtts://` URLs). */
  caPem?: string;
}

/** A floor client process has opened its clients and made one round trip with each. */
export interface FloorClientsDone {
  type: 'connected';
  count: number;
  failed: number;
  /** First failure messages (a few), for the report. */
  errors: string[];
  elapsedMs: number;
  /** CONNECT → CONNACK (sampled). */
  connectMs: number[];
  /** Hello PUBLISH → the reply on the device's down topic (sampled). */
  roundTripMs: number[];
  rssBefore: number;
}

/** A hello as an agent sends it (same fields and size), for the floor's uplink. */
export function floorHello(deviceId: string, credential: string): string {
  return encode(
    createMessage('hello', {
      serialNumber: `FLOOR-${deviceId.slice(0, 40)}`,
      deviceId,
      credential,
      model: 'MRX5 LTE',
      firmwareVersion: '1.4.2',
      agentVersion: '0.1.0',
      capabilities: ['firmware', 'configuration-profile', 'certificate', 'container', 'analytics', 'resume-download'],
      bootId: `boot-${Math.random().toString(36).slice(2, 12)}`,
      inventory: { activeSlot: 'a', configurationVersion: '1.0.0', certificates: 2, containers: 0, storageFreeBytes: 512 * 1024 * 1024 },
    }),
    { validate: false },
  );
}

/** A welcome answering `helloId`, as the server sends it, for the floor's downlink. */
export function floorWelcome(deviceId: string, helloId: string): string {
  return encode(
    createMessage(
      'welcome',
      {
        admission: 'managed',
        deviceId,
        session: { pingIntervalSec: 60, pongTimeoutSec: 20, sessionTimeoutSec: 120 },
        analyticsConsent: false,
        serverTime: Date.now(),
      },
      { correlationId: helloId },
    ),
    { validate: false },
  );
}
