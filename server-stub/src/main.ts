import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp, type BuildAppDeps } from './app.js';
import type { BrokerAccounts } from './channel/mqtt/broker-accounts.js';
import { type BrokerEndpoint, type MqttChannel, mqttEnabled, startMqttChannel } from './channel/mqtt/start.js';
import type { ServerConfig } from './config.js';
import type { Services } from './services.js';

export interface RunningServer {
  readonly app: FastifyInstance;
  /** The address actually listened on (port 0 resolves to a free port). */
  readonly url: string;
  /** The MQTT side of the control channel, when configured. */
  readonly mqtt: MqttChannel | undefined;
  /** Graceful shutdown: stop accepting, finish requests, flush presence, close the store. */
  close(): Promise<void>;
}

/**
 * Starts the broker device accounts at an external Mosquitto (dynamic security): called once, by
 * the process that owns the broker's accounts (standalone server or cluster primary), when
 * `mqttUrl` and the admin credentials are configured. The implementation lives with the broker
 * accounts (`channel/mqtt/`); the server start takes it as a parameter.
 */
export type BrokerAccountsFactory = (input: {
  readonly config: ServerConfig;
  readonly services: Services;
  readonly log: Logger;
}) => Promise<BrokerAccounts>;

export interface MqttStartOptions {
  /** The buckets this process consumes (cluster worker i: `b % workers === i`); default all. */
  readonly buckets?: readonly number[] | undefined;
  /** The embedded broker another process runs (cluster: the primary's). */
  readonly embedded?: BrokerEndpoint | undefined;
}

export interface MainOptions extends BuildAppDeps {
  /** Install SIGINT/SIGTERM handlers that shut down gracefully and exit (default true). */
  readonly handleSignals?: boolean;
  readonly mqtt?: MqttStartOptions;
  /** Broker device accounts (see {@link BrokerAccountsFactory}); not called in cluster workers. */
  readonly brokerAccounts?: BrokerAccountsFactory | undefined;
}

/** Starts the broker accounts when configured and a factory is given; undefined otherwise. */
export async function startBrokerAccounts(
  config: ServerConfig,
  services: Services,
  log: Logger,
  factory: BrokerAccountsFactory | undefined,
): Promise<BrokerAccounts | undefined> {
  if (!factory || config.mqttUrl === null || config.mqttAdminUsername === null || config.mqttAdminPassword === null) return undefined;
  return factory({ config, services, log });
}

/** Builds the app, listens, and (by default) shuts down gracefully on SIGINT/SIGTERM. */
export async function main(config: ServerConfig, options: MainOptions = {}): Promise<RunningServer> {
  const app = await buildApp(config, options);
  let mqtt: MqttChannel | undefined;
  let accounts: BrokerAccounts | undefined;
  // After the channel's own preClose (registered in buildApp): its links have been closed, their
  // close frames sent; the bucket clients and the broker go last.
  app.addHook('preClose', async () => {
    await mqtt?.close();
    await accounts?.close();
  });
  const url = await app.listen({ port: config.port, host: config.host });
  const address = app.server.address();
  if (address && typeof address === 'object') {
    app.services.profiles.setListenPort(address.port);
    app.services.jobs.publicBaseUrl = app.services.profiles.httpBaseUrl();
  }
  if (mqttEnabled(config)) {
    try {
      const log = app.log as unknown as Logger;
      mqtt = await startMqttChannel({
        config,
        accept: (transport) => app.channel.accept(transport),
        authenticateDevice: (uuid, credential) => app.services.admission.authenticate(uuid, credential),
        tlsCaPem: config.tlsCert !== null ? app.services.profiles.caCertPem : undefined,
        buckets: options.mqtt?.buckets,
        embedded: options.mqtt?.embedded,
        log,
        metrics: app.services.metrics,
      });
      const port = mqtt.broker?.port ?? (options.mqtt?.embedded ? Number(new URL(options.mqtt.embedded.url).port) : undefined);
      if (port !== undefined) app.services.profiles.setMqttPort(port);
      accounts = await startBrokerAccounts(config, app.services, log, options.brokerAccounts);
    } catch (err) {
      await app.close();
      throw err;
    }
  }
  app.log.info({ url, dataDir: config.dataDir, testClock: config.testClock, mqtt: app.services.profiles.mqttUrl() }, 'fleet-server listening');

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= app.close();
    return closing;
  };
  if (options.handleSignals !== false) {
    const onSignal = (signal: NodeJS.Signals) => {
      app.log.info({ signal }, 'shutting down');
      const timer = setTimeout(() => {
        app.log.error({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown timed out; exiting');
        process.exit(1);
      }, config.shutdownTimeoutMs);
      timer.unref();
      close().then(
        () => process.exit(0),
        (err: unknown) => {
          app.log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  }
  return { app, url, mqtt, close };
}
