import { createTransport, type OpenLink, type Transport } from '@router-fleet/agent';
import type { Dispatcher } from 'undici';

/** What the simulator's transport counts (one object per process, not per router). */
export interface TransportObserver {
  /** A dial failed (error code of the socket, `HTTP_<status>` or the DialError kind). */
  dialFailed(code: string): void;
  /** An open channel closed (WebSocket close code; the same codes over MQTT, 1006 for a lost link). */
  closed(code: number): void;
}

export interface SimTransportOptions {
  /** Source addresses dialled from, round robin (e.g. 127.0.0.1–127.0.0.4), so ephemeral ports last. */
  localAddresses?: readonly string[];
  observer?: TransportObserver;
}

/** The transport and the open channels it holds (for `cut-connections`). */
export interface SimTransport extends Transport {
  /** Bounded download pools on the same source addresses, in turn. */
  downloadDispatcher(caPem: string): Dispatcher;
  /** Open channels now. */
  open(): number;
  /** Drops a fraction of the open channels abruptly (TCP reset, as a NAT timeout or a cut cable). */
  cut(fraction: number, random: () => number): number;
}

/**
 * The agent's own transport (the profile's URL scheme picks WebSocket or MQTT on every dial; same
 * TLS, frame limits, source addresses), plus the registry of open channels a simulator needs to cut
 * connections and count them.
 */
export function createSimTransport(options: SimTransportOptions = {}): SimTransport {
  const sockets = new Set<OpenLink>();
  const observer = options.observer;
  const transport = createTransport({
    localAddresses: options.localAddresses ?? [],
    observer: {
      dialFailed: (code) => observer?.dialFailed(code),
      opened: (ws) => sockets.add(ws),
      closed: (ws, code) => {
        if (sockets.delete(ws)) observer?.closed(code);
      },
    },
  });
  return {
    dial: (dial) => transport.dial(dial),
    downloadDispatcher: (caPem) => transport.downloadDispatcher(caPem),
    open: () => sockets.size,
    cut(fraction, random) {
      let n = 0;
      for (const ws of [...sockets]) {
        if (random() < fraction) {
          ws.terminate();
          n++;
        }
      }
      return n;
    },
  };
}
