import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { RestClient, RestError } from '../src/rest.js';

let server: Server | undefined;
afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

function listen(port: number, handler: Parameters<typeof createServer>[1]): Promise<Server> {
  const s = createServer(handler);
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => resolve(s));
  });
}

async function freePort(): Promise<number> {
  const s = await listen(0, () => undefined);
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

describe('RestClient', () => {
  it('tries a request again while the server refuses connections (it is starting), and gets the answer', async () => {
    const port = await freePort();
    const client = new RestClient({ server: `http://127.0.0.1:${port}` });
    let served = 0;
    const answer = client.json<{ ok: boolean }>('POST', '/api/thing', { a: 1 });
    // The server comes up after the first try was refused.
    setTimeout(() => {
      void listen(port, (req, res) => {
        served++;
        req.resume();
        req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'));
      }).then((s) => (server = s));
    }, 300);
    await expect(answer).resolves.toEqual({ ok: true });
    expect(served).toBe(1);
    await client.close();
  });

  it('does not repeat a request the server answered with an error: the error carries its code', async () => {
    let served = 0;
    server = await listen(0, (_req, res) => {
      served++;
      res.writeHead(409, { 'content-type': 'application/json' }).end('{"code":"SERVER_CONFLICT","message":"taken"}');
    });
    const { port } = server.address() as AddressInfo;
    const client = new RestClient({ server: `http://127.0.0.1:${port}` });
    const err = await client.json('POST', '/api/thing', {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RestError);
    expect((err as RestError).code).toBe('SERVER_CONFLICT');
    expect(served).toBe(1);
    await client.close();
  });
});
