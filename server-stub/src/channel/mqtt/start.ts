import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import type { MqttProtocolVersion } from '@router-fleet/protocol';
import type { Logger } from 'pino';
import type { ServerConfig } from '../../config.js';
import type { Metrics } from '../../metrics.js';
import type { LinkAcceptor } from '../transport.js';
import { MqttBucketConsumer } from './consumer.js';
import { type EmbeddedBroker, embeddedTls, startEmbeddedBroker } from './embedded-broker.js';
import { allBuckets } from './topic-rules.js';

/** Where the server's bucket clients connect when another process runs the embedded broker (cluster workers). */
export interface BrokerEndpoint {
  readonly url: string;
  readonly username: string;
  readonly password: string;
  /** The certificate fingerprint the clients accept (the embedded broker presents the server's own). */
  readonly fingerprint256?: string | undefined;
}

export type MqttChannelConfig = Pick<
  ServerConfig,
  'mqtt' | 'mqttUrl' | 'mqttUsername' | 'mqttPassword' | 'mqttCa' | 'mqttPort' | 'host' | 'tlsCert' | 'tlsKey'
>;

export interface MqttChannelDeps {
  readonly config: MqttChannelConfig;
  /** `ControlChannel.accept`. */
  readonly accept: LinkAcceptor;
  /** The hello's credential check, for the embedded broker's CONNECT. */
  readonly authenticateDevice: (deviceUuid: string, credential: string) => boolean;
  /** PEM of the CA of the server's TLS certificate (verifies the embedded broker). */
  readonly tlsCaPem?: string | undefined;
  /** The buckets this process consumes (default all). */
  readonly buckets?: readonly number[] | undefined;
  /** The embedded broker of another process (cluster: the primary's); none is started here then. */
  readonly embedded?: BrokerEndpoint | undefined;
  readonly log: Logger;
  readonly metrics?: Metrics | undefined;
  /** A bucket client lost the broker (the seat hold's quiet period stops). */
  readonly brokerLost?: (() => void) | undefined;
  /** Every bucket client that lost the broker has it back (the seat hold's quiet period starts). */
  readonly brokerBack?: (() => void) | undefined;

  /** Devices whose link a will ended just before the broker was lost (`ControlChannel.lostWithServer`). */
  readonly lostBefore?: ((deviceIds: string[]) => void) | undefined;
}

export interface MqttChannel {
  readonly consumer: MqttBucketConsumer;
  /** The embedded broker when this process runs it. */
  readonly broker: EmbeddedBroker | undefined;
  readonly protocolVersion: MqttProtocolVersion;
  /**
   * Serves devices: the uplinks held since the start go to the channel, and the embedded broker
   * lets devices in. Call once the HTTP listener's port is known (job offers name it).
   */
  open(): void;
  /** Ends the bucket clients, then the embedded broker (call after the channel closed its links). */
  close(): Promise<void>;
}

/**
 * Starts the MQTT side of the control channel: the embedded broker when configured (and not run by
 * another process), then the bucket consumer, which hands each device link to the channel once
 * `open()` is called. The embedded broker refuses devices until then, so every hello it takes has a
 * subscribed consumer. The external broker is MQTT 5; the embedded one 3.1.1 (aedes speaks no other).
 */
export async function startMqttChannel(deps: MqttChannelDeps): Promise<MqttChannel> {
  const { config, log } = deps;
  let broker: EmbeddedBroker | undefined;
  let endpoint: BrokerEndpoint & { ca?: string | undefined };
  let protocolVersion: MqttProtocolVersion;
  if (config.mqtt === 'embedded') {
    protocolVersion = 4;
    if (deps.embedded) {
      endpoint = { ...deps.embedded, ca: deps.tlsCaPem };
    } else {
      broker = await startEmbeddedBroker({
        host: config.host,
        port: config.mqttPort,
        tls: embeddedTls(config),
        authenticateDevice: deps.authenticateDevice,
        log,
        metrics: deps.metrics,
      });
      endpoint = { url: broker.url, username: broker.serverUser, password: broker.serverPassword, fingerprint256: broker.fingerprint256, ca: deps.tlsCaPem };
    }
  } else if (config.mqttUrl !== null) {
    protocolVersion = 5;
    // The system CAs plus the configured one (a local CA for a broker of one's own).
    const ca = config.mqttCa !== null ? [...rootCertificates, readFileSync(config.mqttCa, 'utf8')].join('\n') : undefined;
    endpoint = { url: config.mqttUrl, username: config.mqttUsername, password: config.mqttPassword ?? '', ca };
  } else {
    throw new Error('startMqttChannel: MQTT is off in this configuration');
  }
  const consumer = new MqttBucketConsumer({
    url: endpoint.url,
    protocolVersion,
    username: endpoint.username,
    ...(endpoint.password !== '' ? { password: endpoint.password } : {}),
    ca: endpoint.ca,
    pinnedFingerprint256: endpoint.fingerprint256,
    buckets: deps.buckets ?? allBuckets(),
    accept: deps.accept,
    log: log.child({ component: 'mqtt' }),
    metrics: deps.metrics,
    holdUntilOpen: true,
    brokerLost: deps.brokerLost,
    brokerBack: deps.brokerBack,
    lostBefore: deps.lostBefore,
  });
  try {
    await consumer.start();
  } catch (err) {
    await consumer.close(0);
    await broker?.close();
    throw err;
  }
  log.info({ url: endpoint.url, buckets: deps.buckets ?? allBuckets(), protocolVersion }, 'MQTT control channel consuming');
  return {
    consumer,
    broker,
    protocolVersion,
    open() {
      consumer.open();
      // Devices only once every bucket has a consumer (or the start timeout passed).
      broker?.acceptDevices();
    },
    async close() {
      await consumer.close();
      await broker?.close();
    },
  };
}
