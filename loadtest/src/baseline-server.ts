/**
 * Child process: a bare `ws` server (no protocol, no compression; TLS when given a certificate and
 * key) — the floor our server's per-connection cost is compared with. argv: [certPath keyPath].
 * IPC: sends {type:'ready', port}; answers {type:'measure'} with {type:'measured', rss, heapUsed,
 * connections} after a GC.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { WebSocketServer } from 'ws';

const [certPath, keyPath] = process.argv.slice(2);
const options = { perMessageDeflate: false, maxPayload: 64 * 1024 };
const tls = certPath && keyPath ? createServer({ cert: readFileSync(certPath), key: readFileSync(keyPath) }) : undefined;
const wss = tls ? new WebSocketServer({ server: tls, ...options }) : new WebSocketServer({ host: '127.0.0.1', port: 0, ...options });
tls?.listen(0, '127.0.0.1');
let connections = 0;
wss.on('connection', (ws) => {
  connections++;
  ws.on('message', (data) => ws.send(data));
  ws.on('close', () => connections--);
});
(tls ?? wss).on('listening', () => {
  const address = (tls ?? wss).address();
  process.send!({ type: 'ready', port: address && typeof address === 'object' ? address.port : 0 });
});
process.on('message', (m: { type: string }) => {
  if (m.type === 'measure') {
    globalThis.gc?.();
    const mem = process.memoryUsage();
    process.send!({ type: 'measured', rss: mem.rss, heapUsed: mem.heapUsed, connections });
  } else if (m.type === 'stop') {
    for (const c of wss.clients) c.terminate();
    wss.close(() => process.exit(0));
  }
});
process.on('disconnect', () => process.exit(0));
