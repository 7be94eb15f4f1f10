import { randomBytes, timingSafeEqual, X509Certificate } from 'node:crypto';
import { createServer as createPlainServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { isIdentifier } from '@router-fleet/protocol';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import type { Logger } from 'pino';
import type { Metrics } from '../../metrics.js';
import {
  deviceMayPublish,
  deviceMaySubscribe,
  SERVER_CLIENT_PREFIX,
  serverMayPublish,
  serverMaySubscribe,
} from './topic-rules.js';

/** The user name of the server's own bucket clients at the embedded broker. */
export const EMBEDDED_SERVER_USER = 'rf-server';

/** CONNACK return codes of MQTT 3.1.1 (aedes speaks 3.1.1 only). */
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;

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
  close(): Promise<void>;
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
  broker.on('clientError', (client, err) => log.debug({ client: client?.id, err: err.message }, 'embedded broker: client error'));
  broker.on('connectionError', (client, err) => log.debug({ client: client?.id, err: err.message }, 'embedded broker: connection error'));

  const handle = (socket: Socket) => {
    socket.on('error', () => socket.destroy());
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
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Open device connections would hold the listener open.
        broker.close(() => undefined);
      });
    },
  };
}
