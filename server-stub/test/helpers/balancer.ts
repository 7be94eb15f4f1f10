/**
 * A TCP load balancer for tests that run several independent server hosts: every connection goes
 * to the next backend in turn; a backend that refuses (its process was killed) is skipped, and the
 * connection tries the next. Devices and API clients know only the balancer's address, as they
 * would know a cluster's DNS name.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export interface Balancer {
  readonly port: number;
  /** Backends (ports on 127.0.0.1) to spread connections over. */
  setBackends(ports: readonly number[]): void;
  /** Connections handed to each backend so far. */
  readonly handed: ReadonlyMap<number, number>;
  close(): Promise<void>;
}

export async function startBalancer(): Promise<Balancer> {
  let backends: number[] = [];
  let next = 0;
  const handed = new Map<number, number>();
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };

  const server: Server = createServer((client) => {
    track(client);
    client.pause();
    client.on('error', () => {});
    const tryBackend = (attempt: number) => {
      if (backends.length === 0 || attempt >= backends.length) {
        client.destroy();
        return;
      }
      const port = backends[next++ % backends.length]!;
      const upstream = createConnection({ host: '127.0.0.1', port });
      track(upstream);
      upstream.once('connect', () => {
        upstream.removeAllListeners('error');
        upstream.on('error', () => client.destroy());
        client.on('error', () => upstream.destroy());
        handed.set(port, (handed.get(port) ?? 0) + 1);
        client.pipe(upstream);
        upstream.pipe(client);
        client.once('close', () => upstream.destroy());
        upstream.once('close', () => client.destroy());
        client.resume();
      });
      upstream.once('error', () => {
        upstream.destroy();
        tryBackend(attempt + 1);
      });
    };
    tryBackend(0);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address !== 'object') throw new Error('balancer: no address');
  return {
    port: address.port,
    handed,
    setBackends(ports) {
      backends = [...ports];
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
