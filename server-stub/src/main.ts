import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp, type BuildAppDeps } from './app.js';
import { type BrokerAccountsRunning, startBrokerAccounts } from './broker-accounts-start.js';
import { droppingAccounts } from './channel/mqtt/broker-accounts.js';
import type { BrokerEndpoint, MqttChannel } from './channel/mqtt/start.js';
import { mqttEnabled, type ServerConfig } from './config.js';
import { PostgresNoticeBus } from './store/postgres/notices.js';
import { prepareSharedMaterial } from './hosts/prepare.js';
import { isPostgresUrl } from './store/database.js';

export interface RunningServer {
  readonly app: FastifyInstance;
  /** The address actually listened on (port 0 resolves to a free port). */
  readonly url: string;
  /** The MQTT side of the control channel, when configured. */
  readonly mqtt: MqttChannel | undefined;
  /** Graceful shutdown: stop accepting, finish requests, flush presence, close the store. */
  close(): Promise<void>;
}

export interface MqttStartOptions {
  /** The buckets this process consumes (cluster worker i: `b % workers === i`); default all. */
  readonly buckets?: readonly number[] | undefined;
  /** The embedded broker another process runs (cluster: the primary's). */
  readonly embedded?: BrokerEndpoint | undefined;
  /** Ends deleted devices' connections at the embedded broker another process runs (cluster: IPC to the primary). */
  readonly dropDevices?: ((deviceIds: readonly string[]) => void) | undefined;
}

export interface MainOptions extends BuildAppDeps {
  /** Install SIGINT/SIGTERM handlers that shut down gracefully and exit (default true). */
  readonly handleSignals?: boolean;
  readonly mqtt?: MqttStartOptions;
  /**
   * Whether this process reconciles the external broker's device accounts with the store at start
   * (default true; cluster workers leave it to the primary, and still provision what they register).
   */
  readonly reconcileBrokerAccounts?: boolean;
}

/** Builds the app, listens, and (by default) shuts down gracefully on SIGINT/SIGTERM. */
export async function main(config: ServerConfig, options: MainOptions = {}): Promise<RunningServer> {
  // Several hosts on one PostgreSQL store share no file system: the material they must agree on
  // comes from the store, and notices reach the other hosts through it (docs/multi-host.md).
  const shared = config.store !== null && isPostgresUrl(config.store);
  const adopted = shared ? await prepareSharedMaterial(config) : [];
  const bus = shared && !options.notices ? new PostgresNoticeBus(config.store!) : undefined;
  const app = await buildApp(config, bus ? { ...options, notices: bus } : options);
  if (adopted.length > 0) app.log.info({ files: adopted }, 'shared material taken from the store');
  if (bus) {
    app.addHook('onClose', async () => bus.close());
    try {
      await bus.start(app.log as unknown as Logger);
    } catch (err) {
      await app.close();
      throw err;
    }
  }
  let mqtt: MqttChannel | undefined;
  let accounts: BrokerAccountsRunning | undefined;
  // After the channel's own preClose (registered in buildApp): its links have been closed, their
  // close frames sent; the bucket clients and the broker go last.
  app.addHook('preClose', async () => {
    await mqtt?.close();
    await accounts?.close();
  });
  // The MQTT channel starts before the listener, so the first request served already sees the
  // embedded broker's port in the profiles, and every device the channel takes already has its
  // bucket's consumer. Devices are served (`open`) once the listener's port is known: job offers
  // name it. Ready first: only a ready app runs its preClose hooks when a start step fails.
  await app.ready();
  // Which process is out of touch with the broker, for the seat hold: named by its buckets, so a
  // replacement process (same buckets) ends the outage of the one it replaces.
  const owner = `mqtt buckets ${options.mqtt?.buckets?.join(',') ?? 'all'}`;
  if (mqttEnabled(config)) {
    try {
      const log = app.log as unknown as Logger;
      // Loaded only with MQTT on: a WebSocket-only server does not pay for the mqtt package.
      const { startMqttChannel } = await import('./channel/mqtt/start.js');
      mqtt = await startMqttChannel({
        config,
        accept: (transport) => app.channel.accept(transport),
        authenticateDevice: (uuid, credential) => app.services.admission.authenticate(uuid, credential),
        tlsCaPem: config.tlsCert !== null ? app.services.profiles.caCertPem : undefined,
        buckets: options.mqtt?.buckets,
        embedded: options.mqtt?.embedded,
        log,
        metrics: app.services.metrics,
        // Each process's loss of the broker is recorded under the buckets it consumes: the seat
        // hold counts its quiet period only while no process is out of touch with the broker.
        brokerLost: () => {
          try {
            app.services.admission.outageBegan(owner);
          } catch (err) {
            log.error({ err }, 'seat hold: recording the loss of the broker failed');
          }
        },
        brokerBack: () => {
          try {
            app.services.admission.outageOver(owner);
          } catch (err) {
            log.error({ err }, 'seat hold: recording the broker\'s return failed');
          }
        },
        lostBefore: (deviceIds) => app.channel.lostWithServer(deviceIds),
      });
      const port = mqtt.broker?.port ?? (options.mqtt?.embedded ? Number(new URL(options.mqtt.embedded.url).port) : undefined);
      if (port !== undefined) app.services.profiles.setMqttPort(port);
      accounts = await startBrokerAccounts(config, app.services, log, { reconcile: options.reconcileBrokerAccounts ?? true });
      // The embedded broker asks the store at every CONNECT; a deleted device's open connection
      // is ended here (or by the process that runs the broker).
      const broker = mqtt.broker;
      const drop = broker ? (ids: readonly string[]) => broker.dropDevices(ids) : options.mqtt?.dropDevices;
      if (!accounts && drop) app.services.devices.useBrokerAccounts(droppingAccounts(drop));
    } catch (err) {
      await app.close();
      throw err;
    }
  }
  let url: string;
  try {
    url = await app.listen({ port: config.port, host: config.host });
  } catch (err) {
    await app.close();
    throw err;
  }
  const address = app.server.address();
  if (address && typeof address === 'object') {
    app.services.profiles.setListenPort(address.port);
    app.services.jobs.publicBaseUrl = app.services.profiles.httpBaseUrl();
  }
  mqtt?.open();
  if (mqtt?.consumer.subscribedAll) {
    // A process that died while out of touch with the broker is replaced by one with its buckets.
    try {
      app.services.admission.outageOver(owner);
    } catch (err) {
      app.log.error({ err }, 'seat hold: recording the buckets consumed failed');
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
