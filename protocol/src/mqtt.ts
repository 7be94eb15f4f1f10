import { isIdentifier } from './identifiers.js';
import { fnv1a32 } from './random.js';
import { MAX_FRAME_BYTES } from './transport.js';
import { PROTOCOL_MAJOR } from './version.js';

/**
 * The MQTT binding of the control channel: the same JSON messages as on WebSocket, one message per
 * PUBLISH, on per-device topics through a broker.
 *
 * - **Versions.** MQTT 5 where the broker speaks it (Mosquitto 2); MQTT 3.1.1 where it does not (the
 *   embedded broker). Everything the binding needs works on 3.1.1; MQTT 5 adds session expiry,
 *   message expiry, a maximum packet size and reason codes. The connection profile says which.
 * - **Topics** (see {@link mqttTopics}): `rf/v1/{bucket}/{deviceId}/up` (device → server),
 *   `…/down` (server → device) and `…/presence` (retained, with the last will). The bucket
 *   ({@link mqttBucket}, 0–63) is a hash of the device id: each server process consumes whole
 *   buckets, so all uplinks of one device reach one process, in order.
 * - **Client.** Client id = user name = the device id; password = the device credential. Clean start
 *   false with a session expiry ({@link MQTT_SESSION_EXPIRY_SEC}), so QoS 1 downlinks wait while the
 *   device is away. All PUBLISHes are QoS 1.
 * - **A link** is one MQTT connection of the device. After CONNACK the device subscribes to its down
 *   topic, publishes `online` presence (retained, carrying a fresh link id, see
 *   {@link encodePresence}) and waits for its PUBACK, then publishes `hello` on its up topic. The
 *   will is `offline` presence with the same link id. A `hello` on the up topic always starts a new
 *   link on the server (the previous one of that device ends).
 * - **Closing.** The server closes a link by publishing a close frame ({@link encodeCloseFrame}) on
 *   the device's down topic; the device ends its MQTT connection and treats the code as it would a
 *   WebSocket close code (`CloseCodes`). A credential the broker refuses is the WebSocket's 401:
 *   back off for long.
 * - **Liveness.** MQTT keep-alive guards each client's link to the broker; the broker publishes the
 *   will when a device's keep-alive lapses or its connection drops, and the server ends that link
 *   then (the lease grace starts there). Application `ping`/`pong` still runs end to end, device
 *   ↔ server, at the session's interval: it is what tells a device that the server behind a live
 *   broker has gone.
 */
export const MQTT_BINDING = {
  /** First topic levels of every topic of this major version. */
  topicRoot: `rf/v${PROTOCOL_MAJOR}`,
  /** Number of buckets the uplinks are partitioned into (part of the binding: devices compute theirs). */
  buckets: 64,
  /** QoS of every PUBLISH and subscription. */
  qos: 1,
} as const;

/** MQTT protocol levels the binding uses: 5 (MQTT 5.0) or 4 (MQTT 3.1.1). */
export type MqttProtocolVersion = 4 | 5;

/** Session expiry a device asks for on MQTT 5 (seconds): queued downlinks (job offers) wait this long. */
export const MQTT_SESSION_EXPIRY_SEC = 7 * 24 * 3600;

/**
 * Largest MQTT packet either side sends or accepts: a frame of {@link MAX_FRAME_BYTES} plus the
 * fixed header, topic and properties.
 */
export const MQTT_MAX_PACKET_BYTES = MAX_FRAME_BYTES + 1024;

/** Message expiry (seconds, MQTT 5) of downlinks by message type; types not listed do not expire. */
export const MQTT_MESSAGE_EXPIRY_SEC: Readonly<Record<string, number>> = {
  ping: 120,
  pong: 120,
  welcome: 300,
  error: 300,
  close: 300,
};

/** The bucket (0 … buckets − 1) of a device: FNV-1a of its id. */
export function mqttBucket(deviceId: string): number {
  return fnv1a32(deviceId) % MQTT_BINDING.buckets;
}

export interface MqttTopics {
  /** Device → server. */
  up: string;
  /** Server → device. */
  down: string;
  /** Retained presence and last will. */
  presence: string;
}

/** The topics of one device. Throws a TypeError when the id is not an identifier (MQTT wildcards, `/`). */
export function mqttTopics(deviceId: string): MqttTopics {
  if (!isIdentifier(deviceId)) throw new TypeError('device ids must be 1–64 characters of [A-Za-z0-9._:-]');
  const base = `${MQTT_BINDING.topicRoot}/${mqttBucket(deviceId)}/${deviceId}`;
  return { up: `${base}/up`, down: `${base}/down`, presence: `${base}/presence` };
}

/** Subscription filters of a server process that consumes `bucket`. */
export function mqttBucketFilters(bucket: number): { up: string; presence: string } {
  if (!Number.isInteger(bucket) || bucket < 0 || bucket >= MQTT_BINDING.buckets) throw new RangeError(`bucket must be 0–${MQTT_BINDING.buckets - 1}`);
  const base = `${MQTT_BINDING.topicRoot}/${bucket}/+`;
  return { up: `${base}/up`, presence: `${base}/presence` };
}

export type MqttTopicKind = 'up' | 'down' | 'presence';

/** Splits a binding topic into bucket, device id and kind; undefined for any other topic or a wrong bucket. */
export function parseMqttTopic(topic: string): { bucket: number; deviceId: string; kind: MqttTopicKind } | undefined {
  const parts = topic.split('/');
  if (parts.length !== 5 || `${parts[0]}/${parts[1]}` !== MQTT_BINDING.topicRoot) return undefined;
  const [, , b, deviceId, kind] = parts as [string, string, string, string, string];
  if (kind !== 'up' && kind !== 'down' && kind !== 'presence') return undefined;
  if (!isIdentifier(deviceId) || !/^\d{1,2}$/.test(b)) return undefined;
  const bucket = Number(b);
  if (bucket !== mqttBucket(deviceId)) return undefined;
  return { bucket, deviceId, kind };
}

/** Presence of one link: `online` after connect, `offline` as the last will; `link` names the MQTT connection. */
export interface Presence {
  state: 'online' | 'offline';
  link: string;
}

/** `{"presence":"online","link":"…"}` — what a device publishes (retained) on its presence topic. */
export function encodePresence(p: Presence): string {
  return JSON.stringify({ presence: p.state, link: p.link });
}

/** Parses a presence payload; undefined when it is not one (never throws). */
export function parsePresence(payload: Buffer | string): Presence | undefined {
  if (payload.length === 0 || payload.length > 512) return undefined;
  try {
    const v = JSON.parse(payload.toString()) as { presence?: unknown; link?: unknown };
    if ((v.presence !== 'online' && v.presence !== 'offline') || !isIdentifier(v.link)) return undefined;
    return { state: v.presence, link: v.link };
  } catch {
    return undefined;
  }
}

/** The byte prefix of every close frame; no protocol message has a `close` member, so none starts with it. */
export const MQTT_CLOSE_PREFIX = '{"close":';

/**
 * A close frame on the down topic: the MQTT counterpart of a WebSocket close with a code. `link`
 * names the link it closes when the server knows it (from the device's presence): a device ignores
 * a close frame for another of its links, so a close meant for an earlier connection that arrives
 * late cannot end the current one.
 */
export function encodeCloseFrame(code: number, reason: string, link?: string): string {
  const linkPart = link !== undefined && isIdentifier(link) ? `,"link":${JSON.stringify(link)}` : '';
  return `${MQTT_CLOSE_PREFIX}${Math.trunc(code)},"reason":${JSON.stringify(reason.slice(0, 120))}${linkPart}}`;
}

/** Parses a close frame; undefined when the payload is not one (a protocol message). Never throws. */
export function parseCloseFrame(payload: Buffer | string): { code: number; reason: string; link?: string } | undefined {
  const text = typeof payload === 'string' ? payload : payload.toString();
  if (!text.startsWith(MQTT_CLOSE_PREFIX)) return undefined;
  try {
    const v = JSON.parse(text) as { close?: unknown; reason?: unknown; link?: unknown };
    if (!Number.isInteger(v.close) || (v.close as number) < 1000 || (v.close as number) > 4999) return undefined;
    return {
      code: v.close as number,
      reason: typeof v.reason === 'string' ? v.reason : '',
      ...(isIdentifier(v.link) ? { link: v.link } : {}),
    };
  } catch {
    return undefined;
  }
}

/** Whether a URL names the MQTT binding (`mqtts:`, or `mqtt:` where insecure transport is allowed). */
export function isMqttUrl(url: string): boolean {
  return url.startsWith('mqtts://') || url.startsWith('mqtt://');
}
