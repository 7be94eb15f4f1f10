// The reference server (server-stub, built) as a black box for the agent's benches: its CLI makes
// the TLS CA, the account and a licence; `serve` runs on a free port; one device is registered over
// REST and its signed connection profile provisioned into an agent data directory. The agent never
// imports server code; this only starts the server's built CLI and talks HTTPS to it.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';

const run = promisify(execFile);
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SERVER_CLI = join(ROOT, 'server-stub', 'dist', 'cli.js');
const USER = 'bench';
const PASSWORD = 'a long bench secret';

/** VmRSS of a process in KiB (Linux). */
export function rssKiB(pid) {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
}

/** `fleet-server serve` on 127.0.0.1 (port 0: a free one); resolves once it logs that it listens. */
export async function startServer(dataDir, tls, port = 0) {
  const child = spawn(
    process.execPath,
    [SERVER_CLI, 'serve', '--data', dataDir, '--host', '127.0.0.1', '--port', String(port), '--tls-cert', tls.cert, '--tls-key', tls.key],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  child.stderr.on('data', (d) => {
    log = (log + d).slice(-20_000);
  });
  const exit = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`fleet-server did not listen within 60 s:\n${log}`)), 60_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        const entry = JSON.parse(line);
        if (entry.msg === 'fleet-server listening' && entry.url) {
          clearTimeout(timer);
          resolve(entry.url);
        }
      } catch {
        // not a log line
      }
    });
    void exit.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`fleet-server exited (${code ?? signal}) before listening:\n${log}`));
    });
  });
  return {
    child,
    url,
    port: Number(new URL(url).port),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exit;
    },
  };
}

/**
 * A server with one registered, licensed device and that device's profile provisioned into an
 * agent data directory with `agentEntry` (the bundle). `device`: extra registration fields
 * (e.g. `connectionPingInterval`).
 */
export async function stageOneDevice({ agentEntry, device = {} }) {
  const dir = mkdtempSync(join(tmpdir(), 'agent-bench-'));
  const serverDir = join(dir, 'server');
  const tls = JSON.parse((await run(process.execPath, [SERVER_CLI, 'tls', 'generate', '--data', serverDir, '--ip', '127.0.0.1'])).stdout);
  await run(process.execPath, [SERVER_CLI, 'account', 'create', '--data', serverDir, '--name', 'Bench Networks', '--user', USER, '--password', PASSWORD]);
  const code = (await run(process.execPath, [SERVER_CLI, 'licences', 'issue', '--data', serverDir, '--plan', 'basic-25', '--count', '1'])).stdout.trim();
  let server = await startServer(serverDir, tls);
  const dispatcher = new Agent({ pipelining: 0, connect: { ca: readFileSync(tls.ca, 'utf8') } });
  let token;
  const call = async (method, path, body, raw = false) => {
    const res = await request(`${server.url}${path}`, {
      method,
      dispatcher,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const bytes = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode >= 300) throw new Error(`${method} ${path}: HTTP ${res.statusCode} ${bytes.toString('utf8').slice(0, 500)}`);
    return raw ? bytes : JSON.parse(bytes.toString('utf8'));
  };
  token = (await call('POST', '/api/auth/login', { username: USER, password: PASSWORD })).token;
  const licence = await call('POST', '/api/licences/redeem', { code });
  await call('POST', `/api/licences/${licence.uuid}/activate`, {});
  const registered = await call('POST', '/api/inventory/managed-devices', { serialNumber: 'BENCH-0001', name: 'bench router', ...device });
  const profile = join(dir, 'profile.tar');
  writeFileSync(profile, await call('GET', `/api/inventory/managed-devices/${registered.uuid}/connection-profile?format=update-packet`, undefined, true));
  const agentDir = join(dir, 'agent');
  await run(process.execPath, [agentEntry, 'provision', profile, '--data', agentDir, '--trust-anchor', join(serverDir, 'signing', 'trust-anchors.pem')]);
  return {
    agentDir,
    get server() {
      return server;
    },
    device: () => call('GET', `/api/inventory/managed-devices/${registered.uuid}`),
    /** Restarts the server on the same port and data directory (every agent reconnects). */
    async restartServer() {
      const port = server.port;
      await server.stop();
      server = await startServer(serverDir, tls, port);
    },
    async close() {
      await server.stop();
      await dispatcher.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `fn` until it returns a truthy value (or throws after `ms`). */
export async function waitFor(what, fn, ms = 60_000, every = 250) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await fn().catch(() => undefined);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** A process that only idles: the floors an agent is compared with. */
export function idleNode(requires = []) {
  const code = `${requires.map((m) => `require(${JSON.stringify(m)});`).join('')}setInterval(() => {}, 1 << 30);`;
  return spawn(process.execPath, ['-e', code], { stdio: 'ignore' });
}
