import type { ChildProcess } from 'node:child_process';
import { forkChild, nextMessage } from './child.js';
import { loopbackSources, type Percentiles, percentiles } from './stats.js';

/**
 * The floor every report is compared with: a bare `ws` server and bare `ws` clients on this machine,
 * measured in the same run. Memory per connection = RSS growth ÷ connections (after a GC) of the
 * server process and of the client processes; connects per second = connections ÷ ramp time.
 */
export interface BaselineOptions {
  /** Connections to open (one server process holds them: keep ≤ 18,000 under a 20,000-file limit). */
  connections: number;
  /** Client processes the connections are spread over (each ≤ ~19,000 sockets). Default 2. */
  processes?: number;
  /** Connections in flight per client process. Default 200. */
  window?: number;
  /** Source addresses 127.0.0.1…n the clients bind to. Default 4. */
  sourceAddresses?: number;
  /** Measure over TLS (wss) with this certificate, key and CA (PEM files); plain ws without. */
  tls?: { certPath: string; keyPath: string; caPath: string };
  /** How long the clients may take to open every connection (ms). Default 300,000 (5 min). */
  connectTimeoutMs?: number;
}

export interface BaselineResult {
  /** `wss` or `ws`. */
  transport: 'wss' | 'ws';
  connections: number;
  failed: number;
  connectsPerSec: number;
  /** Server RSS growth ÷ connections. Noisy below a few thousand connections (the allocator returns pages at will). */
  serverBytesPerConnection: number;
  /** Server JS heap growth ÷ connections after a full GC: small, but stable even for a few hundred connections. */
  serverHeapBytesPerConnection: number;
  clientBytesPerConnection: number;
  connectMs: Percentiles;
}

interface Measured {
  type: 'measured';
  rss: number;
  heapUsed: number;
  connections: number;
}
interface Connected {
  type: 'connected';
  count: number;
  failed: number;
  elapsedMs: number;
  connectMs: number[];
  rssBefore: number;
}

const GC = ['--expose-gc'];

export async function runBaseline(options: BaselineOptions): Promise<BaselineResult> {
  const processes = options.processes ?? 2;
  const sources = loopbackSources(options.sourceAddresses ?? 4).join(',');
  const children: ChildProcess[] = [];
  try {
    const tls = options.tls;
    const server = forkChild('baseline-server', tls ? [tls.certPath, tls.keyPath] : [], GC);
    children.push(server);
    const { port } = await nextMessage<{ type: 'ready'; port: number }>(server, 'ready');
    server.send({ type: 'measure' });
    const idle = await nextMessage<Measured>(server, 'measured');

    const per = Math.ceil(options.connections / processes);
    const clients = Array.from({ length: processes }, (_, i) => {
      const count = Math.min(per, options.connections - i * per);
      const url = `${tls ? 'wss' : 'ws'}://127.0.0.1:${port}`;
      const child = forkChild('baseline-clients', [url, String(count), String(options.window ?? 200), sources, ...(tls ? [tls.caPath] : [])], GC);
      children.push(child);
      return child;
    });
    const connected = await Promise.all(clients.map((c) => nextMessage<Connected>(c, 'connected', options.connectTimeoutMs ?? 300_000)));
    // The ramp is timed inside the clients (process start-up excluded); they run in parallel.
    const rampMs = Math.max(...connected.map((c) => c.elapsedMs));

    server.send({ type: 'measure' });
    const loaded = await nextMessage<Measured>(server, 'measured');
    const clientMeasures = await Promise.all(
      clients.map((c) => {
        c.send({ type: 'measure' });
        return nextMessage<Measured>(c, 'measured');
      }),
    );
    const total = connected.reduce((n, c) => n + c.count, 0);
    const clientGrowth = clientMeasures.reduce((n, m, i) => n + (m.rss - connected[i]!.rssBefore), 0);
    return {
      transport: tls ? 'wss' : 'ws',
      connections: total,
      failed: connected.reduce((n, c) => n + c.failed, 0),
      connectsPerSec: Math.round(total / (rampMs / 1000)),
      serverBytesPerConnection: total ? Math.round((loaded.rss - idle.rss) / total) : 0,
      serverHeapBytesPerConnection: total ? Math.round((loaded.heapUsed - idle.heapUsed) / total) : 0,
      clientBytesPerConnection: total ? Math.round(clientGrowth / total) : 0,
      connectMs: percentiles(connected.flatMap((c) => c.connectMs)),
    };
  } finally {
    for (const c of children) {
      if (c.connected) c.send({ type: 'stop' });
    }
    await new Promise((r) => setTimeout(r, 100));
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  }
}
