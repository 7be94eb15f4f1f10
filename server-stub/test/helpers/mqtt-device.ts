import { randomUUID } from 'node:crypto';
import {
  createMessage,
  decode,
  encode,
  encodePresence,
  isMessage,
  type Message,
  type MessageOf,
  type MessageType,
  type MqttProtocolVersion,
  mqttTopics,
  parseCloseFrame,
} from '@router-fleet/protocol';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import type { DeviceIdentity } from './fake-device.js';

const WAIT_MS = 10_000;

export interface MqttDeviceOptions {
  protocolVersion?: MqttProtocolVersion;
  ca?: string;
  /** Override the password (a wrong credential). */
  password?: string;
  /** Override the client id (another device's). */
  clientId?: string;
  /** Subscribe to the own down topic after connecting (default true). */
  subscribe?: boolean;
}

/**
 * A device over MQTT as the binding says (a plain `mqtt` client, no agent): client id = user name =
 * device id, password = credential, persistent session, will = `offline` presence of this link.
 * It subscribes to its down topic, publishes `online` presence and records what arrives on down:
 * protocol messages and close frames.
 */
export class MqttDevice {
  readonly received: Message[] = [];
  readonly closes: { code: number; reason: string }[] = [];
  readonly topics: ReturnType<typeof mqttTopics>;
  linkId = '';
  #client: MqttClient | undefined;
  readonly #consumed = new Set<Message>();
  #closesTaken = 0;

  constructor(readonly id: DeviceIdentity) {
    this.topics = mqttTopics(id.uuid);
  }

  get client(): MqttClient {
    if (!this.#client) throw new Error('not connected');
    return this.#client;
  }

  /** Connects (a new MQTT connection with a fresh link id); rejects when the broker refuses. */
  async connect(url: string, options: MqttDeviceOptions = {}): Promise<void> {
    this.linkId = randomUUID();
    const opts: IClientOptions = {
      clientId: options.clientId ?? this.id.uuid,
      username: this.id.uuid,
      password: options.password ?? this.id.credential,
      protocolVersion: options.protocolVersion ?? 4,
      clean: false,
      reconnectPeriod: 0,
      connectTimeout: WAIT_MS,
      keepalive: 30,
      will: { topic: this.topics.presence, payload: Buffer.from(encodePresence({ state: 'offline', link: this.linkId })), qos: 1, retain: true },
      ...(options.ca ? { ca: options.ca } : {}),
      ...(options.protocolVersion === 5 ? { properties: { sessionExpiryInterval: 3600 } } : {}),
    };
    const client = await connectAsync(url, opts);
    this.#client = client;
    client.on('message', (_topic, payload) => {
      const close = parseCloseFrame(payload);
      if (close) {
        this.closes.push(close);
        return;
      }
      const msg = decode(payload, { accept: 'down' });
      if (isMessage(msg)) this.received.push(msg);
    });
    client.on('error', () => undefined);
    if (options.subscribe !== false) {
      const granted = await client.subscribeAsync(this.topics.down, { qos: 1 });
      if (granted[0]?.qos === 128) throw new Error('down subscription refused');
    }
    await client.publishAsync(this.topics.presence, encodePresence({ state: 'online', link: this.linkId }), { qos: 1, retain: true });
  }

  publish(message: Message, topic = this.topics.up): Promise<unknown> {
    return this.client.publishAsync(topic, encode(message, { validate: false }), { qos: 1 });
  }

  hello(overrides: Partial<{ credential: string }> = {}): MessageOf<'hello'> {
    const msg = createMessage('hello', {
      serialNumber: this.id.serialNumber,
      deviceId: this.id.uuid,
      credential: overrides.credential ?? this.id.credential,
      model: 'MRX5 LTE',
      firmwareVersion: '10.3.2',
      agentVersion: '0.1.0',
      capabilities: ['firmware'],
      bootId: randomUUID(),
      inventory: { certificates: 0, containers: 0 },
    });
    void this.publish(msg);
    return msg;
  }

  async admit(): Promise<MessageOf<'welcome'>> {
    const hello = this.hello();
    return this.next('welcome', (m) => m.correlationId === hello.id);
  }

  status(firmwareVersion: string): Promise<unknown> {
    return this.publish(
      createMessage('status', { uptimeSec: 1, link: { type: 'ethernet', up: true }, firmwareVersion, certificates: [], containers: [] }),
    );
  }

  /** ping → pong: once the pong is here, everything the server sent before it is here too. */
  async roundTrip(): Promise<void> {
    const ping = createMessage('ping', {});
    await this.publish(ping);
    await this.next('pong', (m) => m.correlationId === ping.id);
  }

  async next<T extends MessageType>(type: T, where: (m: MessageOf<T>) => boolean = () => true, timeoutMs = WAIT_MS): Promise<MessageOf<T>> {
    return this.until(() => {
      const m = this.received.find((x) => !this.#consumed.has(x) && x.type === type && where(x as MessageOf<T>)) as MessageOf<T> | undefined;
      if (m) this.#consumed.add(m as Message);
      return m;
    }, type, timeoutMs);
  }

  /** The next close frame `nextClose` did not return before. */
  async nextClose(timeoutMs = WAIT_MS): Promise<{ code: number; reason: string }> {
    const c = await this.until(() => this.closes[this.#closesTaken], 'close frame', timeoutMs);
    this.#closesTaken++;
    return c;
  }

  async until<T>(probe: () => T | undefined, what: string, timeoutMs = WAIT_MS): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = probe();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`${this.id.serialNumber}: timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Ends the connection without DISCONNECT (the broker publishes the will). */
  drop(): void {
    this.#client?.stream.destroy();
    this.#client?.end(true);
  }

  async end(): Promise<void> {
    await this.#client?.endAsync(true);
  }
}
