/**
 * Child process: opens N bare ws connections to a URL as fast as a bounded window allows, spread over
 * several 127.0.0.x source addresses (so ephemeral ports never run out), then holds them.
 * argv: url count window sourceAddresses(comma-separated) [caPath] (for wss://). IPC: {type:'connected', count, failed,
 * elapsedMs, connectMs:number[] (sampled)}; answers {type:'measure'} and {type:'stop'}.
 */
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';

const [url, countText, windowText, sourcesText, caPath] = process.argv.slice(2);
const ca = caPath ? readFileSync(caPath, 'utf8') : undefined;
const count = Number(countText);
const window = Number(windowText ?? 200);
const sources = (sourcesText ?? '127.0.0.1').split(',');
const sockets: WebSocket[] = [];
const samples: number[] = [];
let failed = 0;

async function main(): Promise<void> {
  globalThis.gc?.();
  const rssBefore = process.memoryUsage().rss;
  const start = performance.now();
  let next = 0;
  const one = (i: number) =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      const localAddress = sources[i % sources.length];
      const ws = new WebSocket(url!, { localAddress, perMessageDeflate: false, handshakeTimeout: 30_000, ...(ca ? { ca } : {}) });
      ws.on('open', () => {
        if (samples.length < 5000 || i % 10 === 0) samples.push(performance.now() - t0);
        sockets.push(ws);
        resolve();
      });
      ws.on('error', () => {
        failed++;
        resolve();
      });
    });
  const workers = Array.from({ length: Math.min(window, count) }, async () => {
    while (next < count) await one(next++);
  });
  await Promise.all(workers);
  process.send!({ type: 'connected', count: sockets.length, failed, elapsedMs: performance.now() - start, connectMs: samples, rssBefore });
}

process.on('message', (m: { type: string }) => {
  if (m.type === 'measure') {
    globalThis.gc?.();
    const mem = process.memoryUsage();
    process.send!({ type: 'measured', rss: mem.rss, heapUsed: mem.heapUsed, connections: sockets.length });
  } else if (m.type === 'stop') {
    for (const s of sockets) s.terminate();
    setTimeout(() => process.exit(0), 50);
  }
});
process.on('disconnect', () => process.exit(0));
void main();
