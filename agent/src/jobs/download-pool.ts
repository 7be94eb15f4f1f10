import type { Agent, Dispatcher } from 'undici';
import { clientContext } from '../connection/tls-context.js';
import { AgentError } from '../errors.js';

/*
 * The download connection pools, without undici itself: the transports (ws-transport) hand out
 * pools, and an idle agent must not load undici (several MiB of RSS) for a download that may never
 * come. The class is provided by download.ts when it loads, which every download goes through
 * (the update runner imports it), so it is there before the first pool is asked for.
 */
let PoolClass: typeof Agent | undefined;

/** Called once by download.ts, which imports undici. */
export function providePoolClass(agentClass: typeof Agent): void {
  PoolClass ??= agentClass;
}

/** Most connections a download pool opens per origin (downloads beyond it queue in the pool). */
export const DOWNLOAD_CONNECTIONS = 64;

/** How long an idle download socket stays open for the next download (the server's hint may shorten it). */
export const DOWNLOAD_KEEP_ALIVE_MS = 30_000;

const dispatchers = new Map<string, Dispatcher>();

/**
 * A shared, bounded connection pool for packet downloads: one per CA and source address in the
 * process (http and https alike, so thousands of simulated agents downloading at once reuse at most
 * `connections` sockets per origin instead of opening one each and exhausting ephemeral ports).
 */
export function downloadDispatcher(options: { caPem: string; localAddress?: string | undefined; connections?: number }): Dispatcher {
  const key = `${options.localAddress ?? ''}\0${options.connections ?? DOWNLOAD_CONNECTIONS}\0${options.caPem}`;
  let d = dispatchers.get(key);
  if (!d) {
    if (!PoolClass) throw new AgentError('AGENT_INTERNAL', 'download pools are made by the download module, which is not loaded');
    d = new PoolClass({
      // One TLS context per CA (not one per connection); idle sockets kept long enough to be
      // reused by the next download instead of a new handshake each.
      connect: { secureContext: clientContext(options.caPem) },
      keepAliveTimeout: DOWNLOAD_KEEP_ALIVE_MS,
      connections: options.connections ?? DOWNLOAD_CONNECTIONS,
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    });
    dispatchers.set(key, d);
  }
  return d;
}
