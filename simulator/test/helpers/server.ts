import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { RestClient } from '../../src/rest.js';

/** The reference server's compiled CLI (`npm test` builds every package first). */
export const SERVER_CLI = fileURLToPath(new URL('../../../server-stub/dist/cli.js', import.meta.url));
const run = promisify(execFile);

export const cli = async (...args: string[]) => (await run(process.execPath, [SERVER_CLI, ...args], { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 })).stdout;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

export interface TestServer {
  url: string;
  port: number;
  data: string;
  caPem: string;
  caFile: string;
  rest: RestClient;
  token: string;
  /** Stops the server process (SIGTERM, graceful). */
  stop(): Promise<void>;
  /** Kills the server process (SIGKILL: a crash, power cut or OOM kill; nothing is released). */
  kill(): Promise<void>;
  /** Starts it again on the same port and data directory. */
  start(): Promise<void>;
  /** Stops it and removes the data directory. */
  dispose(): Promise<void>;
}

/**
 * The reference server as a child process over HTTPS with a local CA: an account (admin user),
 * `licences` of the given plan issued, imported and activated.
 */
export async function startTestServer(options: { plan: string; count: number; extraArgs?: string[]; tls?: boolean }): Promise<TestServer> {
  const useTls = options.tls ?? true;
  const data = mkdtempSync(join(tmpdir(), 'fleet-sim-server-'));
  const tls = JSON.parse(await cli('tls', 'generate', '--data', data, '--ip', '127.0.0.1')) as { ca: string; cert: string; key: string };
  await cli('account', 'create', '--data', data, '--name', 'Simulated Industries', '--user', 'admin', '--password', 'a long simulator secret');
  const codesCsv = await cli('licences', 'issue', '--data', data, '--plan', options.plan, '--count', String(options.count), '--csv');
  const port = await freePort();
  const url = `${useTls ? 'https' : 'http'}://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  let stderr = '';
  const start = async () => {
    stderr = '';
    child = spawn(
      process.execPath,
      [SERVER_CLI, 'serve', '--data', data, '--host', '127.0.0.1', '--port', String(port), ...(useTls ? ['--tls-cert', tls.cert, '--tls-key', tls.key] : []), '--logLevel', 'warn', ...(options.extraArgs ?? [])],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child.stderr!.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-4000);
    });
    const caPem = readFileSync(tls.ca, 'utf8');
    const probe = new RestClient({ server: url, caPem });
    const deadline = Date.now() + 30_000;
    try {
      for (;;) {
        if (child.exitCode !== null) throw new Error(`fleet-server exited (${child.exitCode}): ${stderr}`);
        try {
          await probe.json('GET', '/healthz');
          return;
        } catch {
          if (Date.now() > deadline) throw new Error(`fleet-server did not answer /healthz: ${stderr}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    } finally {
      await probe.close();
    }
  };
  const stop = async () => {
    const c = child;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  };
  const kill = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  };
  await start();
  const caPem = readFileSync(tls.ca, 'utf8');
  const rest = new RestClient({ server: url, caPem });
  const token = await rest.login('admin', 'a long simulator secret');
  const imported = await rest.raw('POST', '/api/licences/import', codesCsv, 'text/csv');
  await imported.body.dump();
  const { items } = await rest.json<{ items: Array<{ uuid: string; status: string }> }>('GET', '/api/licences');
  for (const l of items) if (l.status === 'available') await rest.json('POST', `/api/licences/${l.uuid}/activate`, {});
  return {
    url,
    port,
    data,
    caPem,
    caFile: tls.ca,
    rest,
    token,
    stop,
    kill,
    start,
    async dispose() {
      await rest.close();
      await stop();
      rmSync(data, { recursive: true, force: true });
    },
  };
}
