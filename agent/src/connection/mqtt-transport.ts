import { Buffer } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import {
  CloseCodes,
  encodePresence,
  MQTT_BINDING,
  MQTT_MAX_PACKET_BYTES,
  MQTT_SESSION_EXPIRY_SEC,
  type MqttProtocolVersion,
  type MqttTopics,
  mqttTopics,
  parseCloseFrame,
} from '@router-fleet/protocol';
import { type IClientOptions, MqttClient } from 'mqtt';
import { downloadDispatcher } from '../jobs/download-pool.js';
import { clientContext } from './tls-context.js';
import {
  type ChannelConnection,
  DialError,
  type DialOptions,
  type NetworkTransportOptions,
  type OpenLink,
  type Transport,
  type TransportObserver,
} from './transport.js';

/** An open MQTT link as the observer sees it. */
export interface MqttOpenLink extends OpenLink {
  readonly deviceId: string;
  /** The link id carried by this connection's presence and will. */
  readonly linkId: string;
}

/** Dial failure codes: the socket's error code, `CONNACK_<code>`, `SUBACK_<code>`, `PUBACK_<code>`, `TIMEOUT`, `CLOSED` or `ABORTED`. */
export type MqttTransportObserver = TransportObserver<MqttOpenLink>;

export type MqttTransportOptions = NetworkTransportOptions<MqttOpenLink>;

/** CONNACK codes that mean "this credential is refused": back off for long, as after HTTP 401. */
const AUTH_REFUSED: Record<MqttProtocolVersion, readonly number[]> = {
  // 3.1.1: bad user name or password, not authorized.
  4: [4, 5],
  // 5: bad user name or password, not authorized, bad authentication method.
  5: [0x86, 0x87, 0x8c],
};

/** CONNACK codes that mean "this client speaks a protocol the broker does not". */
const PROTOCOL_REFUSED: Record<MqttProtocolVersion, readonly number[]> = {
  4: [1, 2],
  // A 3.1.1-only broker (aedes) answers an MQTT 5 CONNECT with the 3.1.1 code 1: the profile's
  // mqttVersion does not match the broker.
  5: [1, 0x84, 0x85],
};

/** MQTT 5 reason code of a PUBACK/SUBACK that refuses for want of rights. */
const NOT_AUTHORIZED = 0x87;

/** RFC 6455's code for a connection that ended without a close frame (never sent on the wire). */
const LINK_LOST = 1006;

/** How long a goodbye (offline presence, DISCONNECT) may take before the socket is dropped. */
const GOODBYE_MS = 2000;

/** Wire value for the offline presence of a link, made once per link. */
const offlinePresence = (link: string) => Buffer.from(encodePresence({ state: 'offline', link }));

/**
 * The MQTT binding of the control channel (the `mqtt` package): one new client per dial, no
 * library reconnect (`reconnectPeriod: 0`; the session's backoff with full jitter governs), client
 * id = user name = device id, password = credential, clean start false (MQTT 5: session expiry
 * MQTT_SESSION_EXPIRY_SEC, maximum packet size MQTT_MAX_PACKET_BYTES), TLS verified with the
 * profile's CA. The will is `offline` presence (retained) with a fresh link id; after CONNACK the
 * device subscribes to its down topic and publishes `online` presence (retained), and the dial
 * resolves on its PUBACK. `send` publishes on the up topic; every PUBLISH and subscription is QoS 1.
 *
 * Downlinks that arrive before the connection's first `send` (its hello) were queued by the broker
 * for an earlier link: close frames among them are dropped, the rest are held and delivered after
 * that send, so the session sees what a WebSocket gives it (nothing before hello; a stale welcome
 * is told apart by its correlation id).
 */
export function createMqttTransport(options: MqttTransportOptions = {}): Transport & Required<Pick<Transport, 'downloadDispatcher'>> {
  const addresses = options.localAddresses ?? [];
  const observer = options.observer;
  let next = 0;
  let nextDownload = 0;
  return {
    downloadDispatcher(caPem: string) {
      // Packets stay on HTTPS; one bounded pool per source address, used in turn.
      const localAddress = addresses.length > 0 ? addresses[nextDownload++ % addresses.length] : undefined;
      return downloadDispatcher({ caPem, localAddress });
    },
    dial(dial: DialOptions): Promise<ChannelConnection> {
      let url: URL;
      try {
        url = new URL(dial.url);
      } catch {
        return Promise.reject(new DialError('protocol', 'invalid server URL'));
      }
      if (url.protocol !== 'mqtts:' && !(dial.allowInsecure && url.protocol === 'mqtt:')) {
        return Promise.reject(new DialError('protocol', `refusing ${url.protocol} (TLS required)`));
      }
      if (dial.deviceId === undefined || dial.credential === undefined) {
        return Promise.reject(new DialError('protocol', 'MQTT needs the device id and credential'));
      }
      let topics: MqttTopics;
      try {
        topics = mqttTopics(dial.deviceId);
      } catch (error) {
        return Promise.reject(new DialError('protocol', (error as Error).message));
      }
      if (dial.signal?.aborted) return Promise.reject(dial.signal.reason as Error);
      const localAddress = addresses.length > 0 ? addresses[next++ % addresses.length] : undefined;
      return new MqttChannel(url, dial, topics, localAddress, observer).open();
    },
  };
}

type ChannelState = 'dialing' | 'open' | 'closing' | 'closed';

/** One MQTT connection of the device: a link. */
class MqttChannel implements ChannelConnection, MqttOpenLink {
  onMessage: ((data: string) => void) | undefined = undefined;
  onClose: ((code: number, reason: string) => void) | undefined = undefined;
  readonly deviceId: string;
  readonly linkId = randomUUID();
  #state: ChannelState = 'dialing';
  readonly #client: MqttClient;
  readonly #topics: MqttTopics;
  readonly #version: MqttProtocolVersion;
  readonly #observer: MqttTransportObserver | undefined;
  #socket: Socket | undefined;
  /** Whether this connection has sent anything yet (downlinks before that belong to an earlier link). */
  #sent = false;
  /** Downlinks waiting for the first send (or for the current delivery to finish). */
  #pending: string[] = [];
  #flushing = false;
  /** Why the link ended (the close code reported to the session). */
  #end: { code: number; reason: string } | undefined;
  #lastError: Error | undefined;
  readonly #timeoutMs: number;
  readonly #signal: AbortSignal | undefined;

  constructor(url: URL, dial: DialOptions, topics: MqttTopics, localAddress: string | undefined, observer: MqttTransportObserver | undefined) {
    this.deviceId = dial.deviceId!;
    this.#topics = topics;
    this.#version = dial.mqttVersion ?? 5;
    this.#observer = observer;
    this.#timeoutMs = dial.timeoutMs;
    this.#signal = dial.signal;
    const secure = url.protocol === 'mqtts:';
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = url.port ? Number(url.port) : secure ? 8883 : 1883;
    const options: IClientOptions = {
      protocolVersion: this.#version,
      clientId: this.deviceId,
      username: this.deviceId,
      password: dial.credential!,
      clean: false,
      keepalive: Math.min(Math.max(Math.round(dial.keepAliveSec ?? 60), 1), 65535),
      reconnectPeriod: 0,
      connectTimeout: dial.timeoutMs,
      resubscribe: false,
      queueQoSZero: false,
      manualConnect: true,
      will: { topic: topics.presence, payload: offlinePresence(this.linkId), qos: MQTT_BINDING.qos, retain: true },
      ...(this.#version === 5 ? { properties: { sessionExpiryInterval: MQTT_SESSION_EXPIRY_SEC, maximumPacketSize: MQTT_MAX_PACKET_BYTES } } : {}),
    };
    // Our own socket (not the library's URL handling): the profile's CA context shared per CA, the
    // source address, no proxy taken from the environment.
    const streamBuilder = () => {
      const socket = secure
        ? tlsConnect({
            host,
            port,
            ...(isIP(host) === 0 ? { servername: host } : {}),
            secureContext: clientContext(dial.caPem),
            ...(localAddress ? { localAddress } : {}),
          })
        : netConnect({ host, port, noDelay: true, ...(localAddress ? { localAddress } : {}) });
      if (secure) socket.setNoDelay(true);
      this.#socket = socket;
      return socket;
    };
    this.#client = new MqttClient(streamBuilder, options);
  }

  /** Connects, subscribes and announces the link; resolves with this connection or rejects with a DialError. */
  open(): Promise<ChannelConnection> {
    const client = this.#client;
    const signal = this.#signal;
    return new Promise<ChannelConnection>((resolve, reject) => {
      let settled = false;
      const fail = (error: DialError, code: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#state = 'closed';
        this.#observer?.dialFailed?.(code);
        client.end(true);
        reject(error);
      };
      const onAbort = () => fail(new DialError('network', 'dial aborted'), 'ABORTED');
      const timer = setTimeout(() => fail(new DialError('network', 'no MQTT session within the dial timeout'), 'TIMEOUT'), this.#timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });

      client.on('error', (error: Error & { code?: string | number }) => {
        this.#lastError = error;
        if (settled) return;
        if (typeof error.code === 'number') {
          const rc = error.code;
          if (!error.message.startsWith('Connection refused')) {
            fail(new DialError('network', error.message, { cause: error }), `MQTT_${rc}`);
            return;
          }
          const kind = AUTH_REFUSED[this.#version].includes(rc) ? 'auth' : PROTOCOL_REFUSED[this.#version].includes(rc) ? 'protocol' : 'network';
          fail(new DialError(kind, `the broker refused the connection: ${error.message}`), `CONNACK_${rc}`);
          return;
        }
        fail(new DialError('network', error.message, { cause: error }), error.code ?? (error.message === 'connack timeout' ? 'TIMEOUT' : 'NETWORK'));
      });
      client.on('close', () => {
        if (!settled) {
          const cause = this.#lastError;
          fail(new DialError('network', cause ? cause.message : 'connection closed before the MQTT session started', { cause }), 'CLOSED');
          return;
        }
        this.#closed();
      });
      client.on('disconnect', (packet) => {
        // MQTT 5: the broker says why it ends the link (session taken over, keep-alive, …).
        this.#lastError = new Error(`broker disconnected (reason code ${packet.reasonCode ?? 0})`);
      });
      client.on('message', (topic, payload) => {
        if (topic === this.#topics.down) this.#arrived(payload.toString());
      });
      client.once('connect', () => {
        client.subscribe(this.#topics.down, { qos: MQTT_BINDING.qos }, (error, granted) => {
          if (settled) return;
          const code = granted?.[0]?.qos ?? 0x80;
          if (error || code >= 0x80) {
            fail(new DialError('auth', `the broker refused the subscription to ${this.#topics.down}`), `SUBACK_${code}`);
            return;
          }
          const online = encodePresence({ state: 'online', link: this.linkId });
          client.publish(this.#topics.presence, online, { qos: MQTT_BINDING.qos, retain: true }, (pubError) => {
            if (settled) return;
            if (pubError) {
              const rc = (pubError as Error & { code?: number }).code;
              if (rc === NOT_AUTHORIZED) fail(new DialError('auth', 'the broker refused the presence'), `PUBACK_${rc}`);
              else fail(new DialError('network', pubError.message, { cause: pubError }), typeof rc === 'number' ? `PUBACK_${rc}` : 'CLOSED');
              return;
            }
            settled = true;
            clearTimeout(timer);
            signal?.removeEventListener('abort', onAbort);
            this.#state = 'open';
            this.#observer?.opened?.(this);
            resolve(this);
          });
        });
      });
      client.connect();
    });
  }

  send(text: string): boolean {
    if (this.#state !== 'open' || !this.#client.connected) return false;
    this.#client.publish(this.#topics.up, text, { qos: MQTT_BINDING.qos }, (error) => {
      // The broker refuses this device's uplink (MQTT 5): its account lacks the right, as a refused credential.
      if ((error as (Error & { code?: number }) | undefined)?.code === NOT_AUTHORIZED) this.close(CloseCodes.AUTH_FAILED, 'the broker refused the uplink');
    });
    if (!this.#sent) {
      this.#sent = true;
      if (this.#pending.length > 0) queueMicrotask(() => this.#flush());
    }
    return true;
  }

  close(code: number, reason = ''): void {
    if (this.#state !== 'open') return;
    this.#goodbye(code, reason);
  }

  terminate(): void {
    this.#socket?.destroy();
  }

  // ── internals ─────────────────────────────────────────────────────────────────────────

  #arrived(text: string): void {
    if (this.#state !== 'open' && this.#state !== 'dialing') return;
    if (parseCloseFrame(text) && (!this.#sent || !this.#mine(text))) return;
    this.#pending.push(text);
    if (this.#sent) this.#flush();
  }

  /** Whether a close frame is for this link: it names this link, or no link (the server did not know it). */
  #mine(text: string): boolean {
    const link = parseCloseFrame(text)?.link;
    return link === undefined || link === this.linkId;
  }

  /** Delivers pending downlinks in order; a close frame ends the link and what follows it is dropped. */
  #flush(): void {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      while (this.#state === 'open' && this.#pending.length > 0) {
        const text = this.#pending.shift()!;
        const frame = parseCloseFrame(text);
        if (frame && frame.link !== undefined && frame.link !== this.linkId) continue;
        if (frame) {
          this.#goodbye(frame.code, frame.reason);
          break;
        }
        this.onMessage?.(text);
      }
    } finally {
      this.#flushing = false;
    }
  }

  /**
   * Leaves the presence `offline` (retained; the server ends the link when it sees it) and ends the
   * MQTT connection with DISCONNECT, so the broker keeps the session (queued job offers) and drops
   * the will. A broker that does not answer in time gets the socket dropped: its keep-alive then
   * publishes the will instead.
   */
  #goodbye(code: number, reason: string): void {
    this.#state = 'closing';
    this.#end = { code, reason };
    this.#pending = [];
    const client = this.#client;
    const force = setTimeout(() => this.terminate(), GOODBYE_MS);
    force.unref();
    client.once('close', () => clearTimeout(force));
    client.publish(this.#topics.presence, offlinePresence(this.linkId), { qos: MQTT_BINDING.qos, retain: true }, () => client.end(false));
  }

  #closed(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#pending = [];
    const end = this.#end ?? { code: LINK_LOST, reason: this.#lastError?.message ?? 'connection lost' };
    this.#observer?.closed?.(this, end.code);
    this.onClose?.(end.code, end.reason);
  }
}
