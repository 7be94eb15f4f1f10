import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import {
  MQTT_CLOSE_PREFIX,
  MQTT_MAX_PACKET_BYTES,
  MQTT_MESSAGE_EXPIRY_SEC,
  MQTT_SESSION_EXPIRY_SEC,
  mqttBucketFilters,
  type MqttProtocolVersion,
  mqttTopics,
  parseMqttTopic,
  parsePresence,
} from '@router-fleet/protocol';
import { connect, type IClientOptions, type IClientPublishOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { Metrics } from '../../metrics.js';
import type { LinkAcceptor } from '../transport.js';
import { type Downlink, MqttLink } from './link.js';
import { serverClientId } from './topic-rules.js';

export interface MqttConsumerOptions {
  /** The broker, `mqtt(s)://host:port`. */
  readonly url: string;
  readonly protocolVersion: MqttProtocolVersion;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  /** PEM CA(s) that verify the broker's certificate (mqtts). */
  readonly ca?: string | undefined;
  /**
   * Accept the broker's certificate under any host name when its SHA-256 fingerprint is this one:
   * the embedded broker presents the server's own certificate, which need not name 127.0.0.1.
   */
  readonly pinnedFingerprint256?: string | undefined;
  /** The buckets this process consumes (all 64 standalone, `b % workers === i` in worker i). */
  readonly buckets: readonly number[];
  /** Where each new link goes (`ControlChannel.accept`). */
  readonly accept: LinkAcceptor;
  readonly log: Logger;
  readonly metrics?: Metrics | undefined;
  /** How long `start` waits for every bucket client's first subscription before it serves anyway (ms). */
  readonly startTimeoutMs?: number | undefined;
  /** Base of the bucket clients' reconnect period (ms); each client adds up to as much again at random. */
  readonly reconnectMs?: number | undefined;
  /**
   * Hold the uplinks that arrive before {@link MqttBucketConsumer.open} (default false: links start
   * at once). The server subscribes before its HTTP listener exists, and a job offer made for a
   * hello the broker had queued would name the packet URL's port before it is known.
   */
  readonly holdUntilOpen?: boolean | undefined;
  /**
   * The first bucket client lost the broker, before its links end: devices cannot reach this
   * process until `brokerBack` (the seat hold stops counting its quiet period).
   */
  readonly brokerLost?: (() => void) | undefined;
  /**
   * Wall-clock time in ms (default `Date.now`): when wills arrive and the broker is lost. Real
   * time even when the server runs on a test clock: these are the network's events.
   */
  readonly now?: (() => number) | undefined;
  /**
   * After a loss of the broker, every bucket client has subscribed again: devices can reach this
   * process again (the seat hold's quiet period counts from here, admission/seat-hold.ts).
   */
  readonly brokerBack?: (() => void) | undefined;
  /**
   * Devices whose link a will ended just before their bucket client lost the broker: part of the
   * loss (`ControlChannel.lostWithServer`).
   */
  readonly lostBefore?: ((deviceIds: string[]) => void) | undefined;
}

type Uplink = readonly [bucket: number, topic: string, payload: Buffer, retained: boolean];

/**
 * How long before a bucket client loses the broker a device's will still counts as part of that
 * loss (ms). Mosquitto shutting down (SIGTERM) publishes the will of every device connection to
 * the server's bucket clients before it closes them: without this, a broker restart would put every
 * seat into its grace period after all.
 */
const WILL_BEFORE_LOSS_MS = 2_000;

/** A down message's type, read from the envelope's second member (`{"v":…,"type":"…"`). */
const TYPE_OF = /^\{"v":[^,]{1,16},"type":"([a-z-]{1,32})"/;

function expiryOf(text: string): number | undefined {
  if (text.startsWith(MQTT_CLOSE_PREFIX)) return MQTT_MESSAGE_EXPIRY_SEC['close'];
  const type = TYPE_OF.exec(text)?.[1];
  return type === undefined ? undefined : MQTT_MESSAGE_EXPIRY_SEC[type];
}

/** A `hello` on the up topic: cheap test first, then the message's own type. */
function isHello(payload: Buffer): boolean {
  if (!payload.includes('"hello"')) return false;
  try {
    return (JSON.parse(payload.toString('utf8')) as { type?: unknown }).type === 'hello';
  } catch {
    return false;
  }
}

/**
 * The server side of the MQTT binding: one client per consumed bucket (client id
 * `rf-server-b{bucket}`, persistent session, QoS 1 subscriptions to the bucket's `up` and
 * `presence`), so every uplink of a device reaches this one process in order, and what the broker
 * queued while the process was away is delivered when the same client id comes back.
 *
 * The link table: per device the current link and the link id of its latest `online` presence.
 * A `hello` always starts a new link (the device's previous one ends); another uplink goes to the
 * current link, or to a new one that the channel answers with HELLO_REQUIRED (a device whose server
 * restarted learns so and says hello again). An `offline` presence (the device's will) ends the link
 * it names; a bucket client that loses the broker ends the links of its bucket (their seats are
 * held until the fleet is back, as after a restart of the server; the devices come back with hello).
 */
export class MqttBucketConsumer implements Downlink {
  readonly #opts: MqttConsumerOptions;
  readonly #clients = new Map<number, MqttClient>();
  readonly #links = new Map<string, MqttLink>();
  readonly #online = new Map<string, string>();
  /** Per bucket, the links ended by a will in the last WILL_BEFORE_LOSS_MS, oldest first. */
  readonly #wills = new Map<number, { deviceId: string; at: number }[]>();
  #closing = false;
  /** Uplinks received before `open()`, in arrival order (undefined once open). */
  #held: Uplink[] | undefined;
  /**
   * Since when the broker is lost (a bucket client that had it closed), until every bucket client
   * has subscribed again: the outage is logged once when it starts and once when it ends, not per
   * client per retry (64 clients retrying every second or two during a broker restart).
   */
  #outage: { since: number; linksEnded: number; refusedReported: boolean } | undefined;
  /** Buckets whose client is connected and subscribed. */
  readonly #subscribed = new Set<number>();

  readonly #now: () => number;

  constructor(options: MqttConsumerOptions) {
    this.#opts = options;
    this.#now = options.now ?? Date.now;
    this.#held = options.holdUntilOpen === true ? [] : undefined;
    options.metrics?.gauge('fleet_mqtt_buckets_connected', 'Bucket clients of this process connected to the broker.', () => {
      let n = 0;
      for (const c of this.#clients.values()) if (c.connected) n++;
      return n;
    });
    options.metrics?.counter('fleet_mqtt_uplinks_total', 'MQTT messages received from devices (up and presence).');
  }

  /** Whether every bucket client is subscribed now. */
  get subscribedAll(): boolean {
    return this.#subscribed.size === this.#clients.size;
  }

  /** Devices with a link in this process. */
  get links(): number {
    return this.#links.size;
  }

  /**
   * Connects every bucket client. Resolves once each has subscribed, or after `startTimeoutMs`
   * (the clients keep trying; links start as buckets come up). Rejects when the broker refuses the
   * server's credential or its bucket subscriptions, or presents a certificate the configured CAs
   * do not vouch for: configuration errors that retrying does not cure.
   */
  async start(): Promise<void> {
    const pending = this.#opts.buckets.map((b) => this.#connect(b));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.#opts.log.warn({ url: this.#opts.url }, 'MQTT: not every bucket client reached the broker yet; serving while they retry');
        resolve();
      }, this.#opts.startTimeoutMs ?? 15_000);
    });
    try {
      await Promise.race([Promise.all(pending), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  #connect(bucket: number): Promise<void> {
    const o = this.#opts;
    const v5 = o.protocolVersion === 5;
    const reconnect = o.reconnectMs ?? 1000;
    const options: IClientOptions & { checkServerIdentity?: (host: string, cert: PeerCertificate) => Error | undefined } = {
      clientId: serverClientId(bucket),
      clean: false,
      protocolVersion: o.protocolVersion,
      keepalive: 30,
      // Spread over a second so 64 clients do not come back in one burst.
      reconnectPeriod: reconnect + Math.floor(Math.random() * reconnect),
      connectTimeout: 10_000,
      // Subscriptions are made on every CONNACK below (with their grant checked).
      resubscribe: false,
      ...(o.username !== undefined ? { username: o.username } : {}),
      ...(o.password !== undefined ? { password: o.password } : {}),
      ...(o.ca !== undefined ? { ca: o.ca } : {}),
      ...(v5 ? { properties: { sessionExpiryInterval: MQTT_SESSION_EXPIRY_SEC, maximumPacketSize: MQTT_MAX_PACKET_BYTES } } : {}),
    };
    if (o.pinnedFingerprint256) {
      const pin = o.pinnedFingerprint256;
      options.checkServerIdentity = (host, cert) => (cert.fingerprint256 === pin ? undefined : checkServerIdentity(host, cert));
    }
    const client = connect(o.url, options);
    this.#clients.set(bucket, client);
    const log = o.log.child({ mqttBucket: bucket });
    return new Promise<void>((resolve, reject) => {
      let first = true;
      client.on('message', (topic, payload, packet) => this.#onMessage(bucket, topic, payload, packet.retain));
      client.on('connect', () => {
        const f = mqttBucketFilters(bucket);
        client.subscribe({ [f.up]: { qos: 1 }, [f.presence]: { qos: 1 } }, (err, granted) => {
          // A refused grant: 0x80 (3.1.1) or a reason code from 0x80 up (MQTT 5, reported as `err`).
          const refused = granted?.filter((g) => g.qos >= 0x80).map((g) => g.topic) ?? [];
          if (err || refused.length > 0) {
            log.error({ err: err?.message, refused }, 'MQTT: the broker refused the bucket subscription (check the server account\'s role)');
            if (first) {
              first = false;
              reject(new Error(`the MQTT broker at ${o.url} refused the server's subscription to bucket ${bucket}: check the role of ${o.username ?? 'the server account'}`));
            }
            return;
          }
          if (first) {
            first = false;
            resolve();
          }
          this.#subscribed.add(bucket);
          this.#maybeBack();
        });
      });
      client.on('close', () => {
        if (!this.#closing) this.#bucketLost(bucket);
      });
      client.on('error', (err: Error & { code?: number | string }) => {
        // CONNACK refusals (3.1.1 codes 4/5, MQTT 5 0x86/0x87/0x8C): the server's own credential.
        const code = err.code;
        const auth = code === 4 || code === 5 || code === 0x86 || code === 0x87 || code === 0x8c;
        if (auth && (first || !this.#outage?.refusedReported)) {
          // A configuration error: said at error level, once per start or outage.
          if (this.#outage) this.#outage.refusedReported = true;
          log.error({ err: err.message, code }, 'MQTT: the broker refused the server\'s credential');
        } else {
          // Refused connections while the broker is away: the outage's two lines say it.
          log.debug({ err: err.message, code }, 'MQTT: bucket client error');
        }
        if (auth && first) {
          first = false;
          reject(new Error(`the MQTT broker at ${o.url} refused the server's credential (user ${o.username ?? '(none)'})`));
        }
        // A certificate the configured CAs do not vouch for: retrying does not cure it either.
        if (typeof code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME/.test(code) && first) {
          first = false;
          reject(new Error(`the TLS certificate of the MQTT broker at ${o.url} is not trusted (${code}): give its CA with mqttCa`));
        }
      });
    });
  }

  /** Hands the uplinks held since the start to the channel, in order, and every later one at once. */
  open(): void {
    const held = this.#held;
    this.#held = undefined;
    for (const [bucket, topic, payload, retained] of held ?? []) this.#onMessage(bucket, topic, payload, retained);
  }

  // ── Downlink ─────────────────────────────────────────────────────────────────────────────

  connected(bucket: number): boolean {
    return this.#clients.get(bucket)?.connected === true;
  }

  publish(deviceId: string, bucket: number, text: string, done?: () => void): void {
    const client = this.#clients.get(bucket);
    if (!client) {
      done?.();
      return;
    }
    const options: IClientPublishOptions = { qos: 1 };
    if (this.#opts.protocolVersion === 5) {
      const expiry = expiryOf(text);
      if (expiry !== undefined) options.properties = { messageExpiryInterval: expiry };
    }
    client.publish(mqttTopics(deviceId).down, text, options, (err) => {
      if (err) this.#opts.log.debug({ err: err.message, device: deviceId }, 'MQTT: downlink publish failed');
      done?.();
    });
  }

  forget(link: MqttLink): void {
    if (this.#links.get(link.deviceId) === link) this.#links.delete(link.deviceId);
  }

  // ── uplinks ──────────────────────────────────────────────────────────────────────────────

  #onMessage(bucket: number, topic: string, payload: Buffer, retained: boolean): void {
    if (this.#closing) return;
    if (this.#held) {
      this.#held.push([bucket, topic, payload, retained]);
      return;
    }
    this.#opts.metrics?.inc('fleet_mqtt_uplinks_total');
    const t = parseMqttTopic(topic);
    // The broker delivers only what the subscription filters match; anything else is not ours.
    if (!t || t.bucket !== bucket) return;
    if (t.kind === 'presence') return this.#presence(t.deviceId, payload, retained);
    if (t.kind !== 'up') return;
    const current = this.#links.get(t.deviceId);
    if (isHello(payload)) {
      current?.end();
      return this.#newLink(t.deviceId, bucket).frame(payload);
    }
    (current ?? this.#newLink(t.deviceId, bucket)).frame(payload);
  }

  /**
   * `retained`: the broker's stored presence, replayed when a subscription is made (at start or
   * after a reconnect): it tells the device's current link id but is no news of a new connection.
   */
  #presence(deviceId: string, payload: Buffer, retained: boolean): void {
    const p = parsePresence(payload);
    if (!p) return;
    const link = this.#links.get(deviceId);
    if (p.state === 'online') {
      this.#online.set(deviceId, p.link);
      if (retained) {
        // A link made from a queued hello before the replay arrived: this is its connection.
        if (link && link.linkId === undefined) link.linkId = p.link;
        return;
      }
      // A new MQTT connection of the device: the link of an older one is over.
      if (link && link.linkId !== p.link) link.end();
      return;
    }
    // The will of a connection that has gone; an older connection's late will is ignored. A link
    // whose connection was never named (no presence heard) cannot be told apart: it ends.
    if (this.#online.get(deviceId) === p.link) this.#online.delete(deviceId);
    if (link && (link.linkId === p.link || link.linkId === undefined)) {
      link.end();
      this.#willEnded(link);
    }
  }

  #willEnded(link: MqttLink): void {
    const now = this.#now();
    const recent = this.#wills.get(link.bucket) ?? [];
    while (recent.length > 0 && now - recent[0]!.at > WILL_BEFORE_LOSS_MS) recent.shift();
    recent.push({ deviceId: link.deviceId, at: now });
    this.#wills.set(link.bucket, recent);
  }

  #newLink(deviceId: string, bucket: number): MqttLink {
    const link = new MqttLink(deviceId, bucket, this.#online.get(deviceId), this);
    this.#links.set(deviceId, link);
    link.bind(this.#opts.accept(link));
    return link;
  }

  #bucketLost(bucket: number): void {
    this.#subscribed.delete(bucket);
    const lost = [...this.#links.values()].filter((l) => l.bucket === bucket);
    if (!this.#outage) {
      this.#outage = { since: this.#now(), linksEnded: 0, refusedReported: false };
      this.#opts.log.warn({ url: this.#opts.url, mqttBucket: bucket }, 'MQTT: lost the broker; the bucket clients reconnect and the links of their buckets end');
      this.#opts.brokerLost?.();
    }
    this.#outage.linksEnded += lost.length;
    // The server lost these links, not their devices: their seats are held, not put into grace.
    for (const l of lost) l.end('server-outage');
    const now = this.#now();
    const willed = (this.#wills.get(bucket) ?? []).filter((w) => now - w.at <= WILL_BEFORE_LOSS_MS).map((w) => w.deviceId);
    this.#wills.delete(bucket);
    if (willed.length > 0) this.#opts.lostBefore?.(willed);
  }

  /** After a bucket client subscribed: the outage is over once every one of them has. */
  #maybeBack(): void {
    const outage = this.#outage;
    if (!outage || this.#closing || this.#subscribed.size < this.#clients.size) return;
    this.#outage = undefined;
    this.#opts.log.info({ url: this.#opts.url, outageMs: this.#now() - outage.since, linksEnded: outage.linksEnded }, 'MQTT: the broker is back; every bucket client subscribed');
    this.#opts.brokerBack?.();
  }

  /**
   * Ends the bucket clients after the channel has closed its links (their close frames are
   * acknowledged first: a client ended without force waits for its in-flight messages).
   */
  async close(timeoutMs = 5_000): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    for (const l of [...this.#links.values()]) l.end();
    await Promise.all(
      [...this.#clients.values()].map(async (c) => {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          c.endAsync(false),
          new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
        ]);
        clearTimeout(timer);
        if (!c.disconnected) await c.endAsync(true);
      }),
    );
    this.#clients.clear();
  }
}
