import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createMessage, writePacket } from '@router-fleet/protocol';
import { request } from 'undici';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type ChannelWorld, channelWorld } from './helpers/channel-world.js';
import { removeTempDirs, T0, TS_REGISTER, tempDir } from './helpers/setup.js';

const worlds: ChannelWorld[] = [];
const children: ChildProcessWithoutNullStreams[] = [];
afterEach(async () => {
  for (const w of worlds.splice(0)) await w.stop();
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});
afterAll(() => removeTempDirs());

/** Everything the server sends on a raw socket until it closes, and when it closed. */
function rawExchange(url: string, onConnect: (socket: Socket) => void): Promise<{ text: string; closedAt: number }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => onConnect(socket));
    const chunks: Buffer[] = [];
    socket.on('data', (b: Buffer) => chunks.push(b));
    socket.on('error', () => {}); // a reset after the answer is fine: 'close' follows
    socket.on('close', () => resolve({ text: Buffer.concat(chunks).toString('utf8'), closedAt: Date.now() }));
    setTimeout(() => {
      socket.destroy();
      reject(new Error('the server did not close the connection within 30 s'));
    }, 30_000).unref();
  });
}

function errorBodyOf(text: string): { code?: string; retryable?: boolean } {
  const body = text.slice(text.indexOf('\r\n\r\n') + 4);
  return JSON.parse(body) as { code?: string; retryable?: boolean };
}

describe('HTTP edge on a real socket', () => {
  it('cuts off a client that sends headers and then a body byte by byte, after the request timeout; a control channel opened before stays up', async () => {
    const w = await channelWorld({ httpRequestTimeoutMs: 1_000, httpHeadersTimeoutMs: 500, httpIdleTimeoutMs: 60_000 });
    worlds.push(w);
    const t = await w.newTenant();
    w.licences(t, 'basic-25', 1);
    const [device] = w.devices(t, 1);
    const d = await w.admitted(device!);

    const started = Date.now();
    let trickle: NodeJS.Timeout | undefined;
    const { text, closedAt } = await rawExchange(w.server.url, (socket) => {
      socket.write(
        'POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{',
      );
      // One byte every 100 ms keeps the idle timeout from firing: only the request deadline can.
      trickle = setInterval(() => {
        if (socket.writable) socket.write(' ');
      }, 100);
    });
    clearInterval(trickle);
    const elapsed = closedAt - started;
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(20_000);
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
    expect(errorBodyOf(text)).toMatchObject({ code: 'SERVER_REQUEST_TIMEOUT', retryable: true });

    // The upgraded control channel is no request in progress: it answers after the deadline passed.
    expect(d.closed).toBeUndefined();
    const ping = createMessage('ping', {});
    d.send(ping);
    expect(await d.next('pong', (m) => m.correlationId === ping.id)).toBeTruthy();
  });

  it('answers a client that never finishes its headers with 408 after the headers timeout', async () => {
    const w = await channelWorld({ httpRequestTimeoutMs: 5_000, httpHeadersTimeoutMs: 500 });
    worlds.push(w);
    const started = Date.now();
    const { text, closedAt } = await rawExchange(w.server.url, (socket) => {
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
    });
    expect(closedAt - started).toBeLessThan(20_000);
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
    expect(errorBodyOf(text).code).toBe('SERVER_REQUEST_TIMEOUT');
  });

  it('answers garbage and oversized headers with catalogue codes and closes the connection', async () => {
    const w = await channelWorld();
    worlds.push(w);
    const garbage = await rawExchange(w.server.url, (socket) => socket.write('\x16\x03\x01 not http at all\r\n\r\n'));
    expect(garbage.text).toMatch(/^HTTP\/1\.1 400 /);
    expect(errorBodyOf(garbage.text).code).toBe('SERVER_BAD_HTTP');
    const huge = await rawExchange(w.server.url, (socket) =>
      socket.write(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`),
    );
    expect(huge.text).toMatch(/^HTTP\/1\.1 431 /);
    expect(errorBodyOf(huge.text).code).toBe('SERVER_HEADERS_TOO_LARGE');
    // A malformed URL reaches fastify: the same catalogue body.
    const badUrl = await request(`${w.server.url}/api/devices/%E0%A4%A`);
    expect(badUrl.statusCode).toBe(400);
    expect(await badUrl.body.json()).toMatchObject({ code: 'SERVER_BAD_HTTP' });
    expect((await request(`${w.server.url}/healthz`)).statusCode).toBe(200);
  });
});

// ── full disk ───────────────────────────────────────────────────────────────────────────────

const CHILD = fileURLToPath(new URL('./helpers/full-disk-child.ts', import.meta.url));
const FS_BYTES = 6 * 1024 * 1024;

interface SmallFs {
  readonly how: string;
  /** Starts the server child on a fresh 6 MB file system mounted at `dir`. */
  start(dir: string): ChildProcessWithoutNullStreams;
  /** Unmounts what `start` mounted outside a private namespace. */
  cleanup(dir: string): void;
}

const serverArgs = (dir: string) => [process.execPath, '--import', TS_REGISTER, CHILD, dir];
const run = (cmd: string, args: string[]) => spawnSync(cmd, args, { timeout: 20_000 }).status === 0;

/**
 * How to run the server on a real 6 MB file system: a tmpfs mounted in a private mount namespace
 * (`unshare -m`, nothing is mounted on the host), else a loop-mounted ext4 image (mounted on the
 * host, unmounted after the test). Both need root or CAP_SYS_ADMIN. Null when neither works, and
 * the test says so instead of passing silently. FLEET_TEST_SMALL_FS=loop forces the fallback.
 */
function smallFs(): SmallFs | null {
  const force = process.env['FLEET_TEST_SMALL_FS'];
  const probe = tempDir();
  if (force !== 'loop' && run('unshare', ['-m', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs -o size=${FS_BYTES} fleet-probe "$0"`, probe])) {
    return {
      how: 'tmpfs in a private mount namespace',
      start: (dir) =>
        spawn(
          'unshare',
          ['-m', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs -o size=${FS_BYTES} fleet-full "$0" && exec "$@"`, dir, ...serverArgs(dir)],
          { stdio: ['pipe', 'pipe', 'pipe'] },
        ),
      cleanup: () => {},
    };
  }
  const image = join(probe, 'probe.img');
  if (run('truncate', ['-s', String(FS_BYTES), image]) && run('mkfs.ext4', ['-q', '-F', image]) && run('mount', ['-o', 'loop', image, probe])) {
    run('umount', [probe]);
    return {
      how: 'loop-mounted ext4 image',
      start: (dir) => {
        const img = `${dir}.img`;
        if (!run('truncate', ['-s', String(FS_BYTES), img]) || !run('mkfs.ext4', ['-q', '-F', img]) || !run('mount', ['-o', 'loop', img, dir])) {
          throw new Error(`could not mount ${img} on ${dir}`);
        }
        const [cmd, ...args] = serverArgs(dir);
        return spawn(cmd!, args, { stdio: ['pipe', 'pipe', 'pipe'] });
      },
      cleanup: (dir) => {
        run('umount', ['-l', dir]);
      },
    };
  }
  return null;
}

const small = smallFs();
if (!small) {
  console.warn('full-disk test SKIPPED: neither `unshare -m` + tmpfs nor a loop-mounted image works here (needs root or CAP_SYS_ADMIN)');
}
const mounted: string[] = [];
afterEach(() => {
  for (const dir of mounted.splice(0)) small?.cleanup(dir);
});

describe('a full data directory (real 6 MB tmpfs)', () => {
  it.skipIf(!small)(
    `answers 507 SERVER_STORAGE_FULL (retryable), reports degraded, lets packets be deleted and resumes without a restart (${small?.how ?? 'no small file system'})`,
    async () => {
      const dir = join(tempDir(), 'data');
      mkdirSync(dir);
      mounted.push(dir);
      const child = small!.start(dir);
      children.push(child);
      let stderr = '';
      child.stderr.on('data', (b: Buffer) => {
        stderr += b.toString();
      });
      const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
      const { url, token } = await new Promise<{ url: string; token: string }>((resolve, reject) => {
        createInterface({ input: child.stdout }).on('line', (line) => {
          try {
            resolve(JSON.parse(line) as { url: string; token: string });
          } catch {
            // not ours
          }
        });
        void exited.then((code) => reject(new Error(`server exited ${code}: ${stderr}`)));
      });
      const auth = { authorization: `Bearer ${token}` };
      const api = async (method: 'GET' | 'DELETE' | 'POST', path: string, body?: Buffer) => {
        const res = await request(`${url}${path}`, {
          method,
          headers: body ? { ...auth, 'content-type': 'application/x-tar' } : auth,
          ...(body ? { body } : {}),
        });
        const text = await res.body.text();
        return { status: res.statusCode, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
      };
      const packet = async (i: number) =>
        writePacket({
          files: [{ name: `c${i}.bin`, fileType: 'Container', source: { data: randomBytes(400 * 1024) } }],
          createdAt: new Date(T0),
        });

      expect((await api('GET', '/healthz')).json).toMatchObject({ status: 'ok', storage: { reserve: true } });
      const stored: string[] = [];
      let full: { status: number; json: Record<string, unknown> } | undefined;
      for (let i = 0; i < 40 && !full; i++) {
        const r = await api('POST', `/api/packets?name=p${i}`, await packet(i));
        if (r.status === 201) stored.push(r.json['uuid'] as string);
        else full = r;
      }
      expect(full, 'the disk never filled').toBeDefined();
      expect(full!.status).toBe(507);
      expect(full!.json).toMatchObject({ code: 'SERVER_STORAGE_FULL', retryable: true });
      expect(stored.length).toBeGreaterThan(3);
      expect((await api('GET', '/healthz')).json).toMatchObject({ status: 'degraded', storage: { full: true } });

      // The operator frees space through the API.
      for (const uuid of stored.slice(0, 4)) expect((await api('DELETE', `/api/packets/${uuid}`)).status).toBe(204);
      // Service resumes in the same process: uploads work again and health recovers.
      const again = await api('POST', '/api/packets?name=again', await packet(1000));
      expect(again.status).toBe(201);
      const health = await api('GET', '/healthz');
      expect(health.json).toMatchObject({ status: 'ok', storage: { full: false, reserve: true } });
      child.kill('SIGTERM');
      await exited;
    },
    120_000,
  );
});
