import { Buffer } from 'node:buffer';
import { randomBytes, timingSafeEqual, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer as createPlainServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { isIdentifier, MQTT_MAX_PACKET_BYTES } from '@router-fleet/protocol';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import type { Logger } from 'pino';
import type { ServerConfig } from '../../config.js';
import type { Metrics } from '../../metrics.js';
import { PacketSizeGuard } from './packet-guard.js';
import {
  EMBEDDED_SERVER_USER,
  deviceMayPublish,
  deviceMaySubscribe,
  SERVER_CLIENT_PREFIX,
  serverMayPublish,
  serverMaySubscribe,
} from './topic-rules.js';

export { EMBEDDED_SERVER_USER } from './topic-rules.js';

/** CONNACK return codes of MQTT 3.1.1 (aedes speaks 3.1.1 only). */
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;
/** MQTT 3.1.1 CONNACK: server unavailable (devices retry with their backoff). */
const SERVER_UNAVAILABLE = 3;

export interface EmbeddedBrokerOptions {
  /** Address to listen on (the server's `host`). */
  readonly host: string;
  /** TCP port (0 = any free port). */
  readonly port: number;
  /** PEM certificate chain and key: TLS (mqtts). Without them plain MQTT (development only). */
  readonly tls?: { readonly cert: string; readonly key: string } | undefined;
  /** The hello's check: whether `credential` is the current credential of device `deviceUuid`. */
  readonly authenticateDevice: (deviceUuid: string, credential: string) => boolean;
  /** The server clients' password (default: random, made here). */
  readonly serverPassword?: string | undefined;
  readonly log: Logger;
  readonly metrics?: Metrics | undefined;
}

export interface EmbeddedBroker {
  /** The port actually listened on. */
  readonly port: number;
  /** Where the server's own clients connect (`mqtt(s)://127.0.0.1:port` for a wildcard host). */
  readonly url: string;
  readonly tls: boolean;
  /** SHA-256 fingerprint of the certificate the broker presents (the server clients pin it). */
  readonly fingerprint256: string | undefined;
  /** The server clients' user name and password. */
  readonly serverUser: string;
  readonly serverPassword: string;
  /**
   * Lets devices in. Until then they are refused as "server unavailable" and retry: a hello
   * published before the server's bucket clients have subscribed would reach nobody (the broker
   * keeps no sessions across a restart), and its device would wait for a welcome that never comes.
   */
  acceptDevices(): void;
  /**
   * Ends the open connections of these devices (deleted ones: the broker refuses them from then
   * on, as it asks the store at every CONNECT). Their wills are published, which ends their links.
   */
  dropDevices(deviceIds: readonly string[]): void;
  close(): Promise<void>;
}

/** Reads the server's certificate chain and key for the embedded broker's TLS listener. */
export function embeddedTls(config: Pick<ServerConfig, 'tlsCert' | 'tlsKey'>): { cert: string; key: string } | undefined {
  if (config.tlsCert === null || config.tlsKey === null) return undefined;
  return { cert: readFileSync(config.tlsCert, 'utf8'), key: readFileSync(config.tlsKey, 'utf8') };
}

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Set on a client that logged in with the server's account. */
type MaybeServerClient = Client & { rfServer?: boolean };

const isServerClient = (client: Client | null): boolean => client !== null && (client as MaybeServerClient).rfServer === true;

/**
 * The in-process broker of `serve --mqtt embedded` (aedes, MQTT 3.1.1, sessions and retained
 * messages in memory: they live as long as the process). Devices log in with user name = client id
 * = their device id and their credential, checked as a hello is; the server's bucket clients with
 * {@link EMBEDDED_SERVER_USER} and a password made at start. Topic rules: topic-rules.ts.
 */
export async function startEmbeddedBroker(options: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const log = options.log.child({ component: 'mqtt-broker' });
  const serverPassword = options.serverPassword ?? randomBytes(24).toString('base64url');
  const metrics = options.metrics;
  metrics?.counter('fleet_mqtt_broker_refused_total', 'Embedded broker: CONNECTs refused, by reason.');
  metrics?.counter('fleet_mqtt_broker_denied_total', 'Embedded broker: publishes and subscriptions denied by the topic rules, by kind.');

  let devicesOpen = false;
  const broker = await Aedes.createBroker({
    // Ids longer than a device id are not ours (the default allows 23; device ids are up to 64).
    maxClientsIdLength: 64,
    authenticate(client, username, password, done) {
      const secret = password?.toString('utf8') ?? '';
      if (username === EMBEDDED_SERVER_USER) {
        if (client.id.startsWith(SERVER_CLIENT_PREFIX) && sameSecret(secret, serverPassword)) {
          (client as MaybeServerClient).rfServer = true;
          return done(null, true);
        }
        metrics?.inc('fleet_mqtt_broker_refused_total', { reason: 'server-credential' });
        return done(authError('bad server credential', BAD_USERNAME_OR_PASSWORD), null);
      }
      if (!devicesOpen) {
        metrics?.inc('fleet_mqtt_broker_refused_total', { reason: 'starting' });
        return done(authError('the server is starting', SERVER_UNAVAILABLE), null);
      }
      if (username === undefined || client.id !== username || !isIdentifier(username)) {
        metrics?.inc('fleet_mqtt_broker_refused_total', { reason: 'client-id' });
        return done(authError('client id must be the device id', NOT_AUTHORIZED), null);
      }
      let ok = false;
      try {
        ok = options.authenticateDevice(username, secret);
      } catch (err) {
        log.error({ err }, 'embedded broker: device check failed');
      }
      if (!ok) {
        metrics?.inc('fleet_mqtt_broker_refused_total', { reason: 'device-credential' });
        return done(authError('unknown device or wrong credential', BAD_USERNAME_OR_PASSWORD), null);
      }
      return done(null, true);
    },
    authorizePublish(client, packet, done) {
      // The broker's own publishes (client null) are not checked; wills come with their client.
      if (client === null) return done(null);
      const ok = isServerClient(client) ? serverMayPublish(packet.topic) : deviceMayPublish(client.id, packet.topic);
      if (ok) return done(null);
      metrics?.inc('fleet_mqtt_broker_denied_total', { kind: 'publish' });
      // MQTT 3.1.1 cannot refuse one PUBLISH: the client is disconnected.
      return done(new Error(`publishing on ${packet.topic} is not allowed`));
    },
    authorizeSubscribe(client, sub, done) {
      const ok = isServerClient(client) ? serverMaySubscribe(sub.topic) : deviceMaySubscribe(client.id, sub.topic);
      if (ok) return done(null, sub);
      metrics?.inc('fleet_mqtt_broker_denied_total', { kind: 'subscribe' });
      // A failed grant (0x80) in the SUBACK: the subscription does not exist.
      return done(null, null);
    },
  });
  // The connected devices by id, to end a deleted one's connection.
  const devices = new Map<string, Client>();
  broker.on('clientReady', (client) => {
    if (!isServerClient(client)) devices.set(client.id, client);
  });
  broker.on('clientDisconnect', (client) => {
    if (devices.get(client.id) === client) devices.delete(client.id);
  });
  broker.on('clientError', (client, err) => log.debug({ client: client?.id, err: err.message }, 'embedded broker: client error'));
  broker.on('connectionError', (client, err) => log.debug({ client: client?.id, err: err.message }, 'embedded broker: connection error'));

  const handle = (socket: Socket) => {
    socket.on('error', () => socket.destroy());
    // aedes pulls with read(); each chunk passes the size guard before its parser sees it.
    const guard = new PacketSizeGuard(MQTT_MAX_PACKET_BYTES);
    const read = socket.read.bind(socket);
    socket.read = (size?: number) => {
      const chunk = read(size) as Buffer | string | null;
      if (chunk === null || typeof chunk === 'string' || guard.feed(chunk)) return chunk;
      metrics?.inc('fleet_mqtt_broker_refused_total', { reason: 'packet-too-large' });
      socket.destroy();
      return null;
    };
    broker.handle(socket);
  };
  let server: Server;
  let fingerprint256: string | undefined;
  if (options.tls) {
    server = createTlsServer({ cert: options.tls.cert, key: options.tls.key }, handle);
    fingerprint256 = new X509Certificate(options.tls.cert).fingerprint256;
  } else {
    server = createPlainServer(handle);
  }
  // A handshake that fails (a client with the wrong CA, garbage on the port) must not crash anything.
  server.on('tlsClientError', (err: Error) => log.debug({ err: err.message }, 'embedded broker: TLS handshake failed'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log.error({ err }, 'embedded broker: listener error'));
  const port = (server.address() as { port: number }).port;
  const wildcard = ['0.0.0.0', '::', ''].includes(options.host);
  let host = wildcard ? '127.0.0.1' : options.host;
  if (host.includes(':')) host = `[${host}]`;
  const tls = options.tls !== undefined;
  log.info({ port, tls }, 'embedded MQTT broker listening');
  return {
    port,
    url: `${tls ? 'mqtts' : 'mqtt'}://${host}:${port}`,
    tls,
    fingerprint256,
    serverUser: EMBEDDED_SERVER_USER,
    serverPassword,
    acceptDevices() {
      devicesOpen = true;
    },
    dropDevices(deviceIds) {
      for (const id of deviceIds) {
        const client = devices.get(id);
        if (!client) continue;
        devices.delete(id);
        log.info({ device: id }, 'embedded broker: connection of a deleted device ended');
        client.close();
      }
    },
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Open device connections would hold the listener open.
        broker.close(() => undefined);
      });
    },
  };
}
