import type { FastifyInstance } from 'fastify';
import { buildApp, type BuildAppDeps } from './app.js';
import type { ServerConfig } from './config.js';

export interface RunningServer {
  readonly app: FastifyInstance;
  /** The address actually listened on (port 0 resolves to a free port). */
  readonly url: string;
  /** Graceful shutdown: stop accepting, finish requests, flush presence, close the store. */
  close(): Promise<void>;
}

export interface MainOptions extends BuildAppDeps {
  /** Install SIGINT/SIGTERM handlers that shut down gracefully and exit (default true). */
  readonly handleSignals?: boolean;
}

/** Builds the app, listens, and (by default) shuts down gracefully on SIGINT/SIGTERM. */
export async function main(config: ServerConfig, options: MainOptions = {}): Promise<RunningServer> {
  const app = await buildApp(config, options);
  const url = await app.listen({ port: config.port, host: config.host });
  const address = app.server.address();
  if (address && typeof address === 'object') {
    app.services.profiles.setListenPort(address.port);
    app.services.jobs.publicBaseUrl = app.services.profiles.httpBaseUrl();
  }
  app.log.info({ url, dataDir: config.dataDir, testClock: config.testClock }, 'fleet-server listening');

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
  return { app, url, close };
}
