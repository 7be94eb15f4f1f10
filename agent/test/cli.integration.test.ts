import { execFileSync, spawn } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../src/cli-main.js';
import { CONNECTION_PROFILE_FORMAT } from '../src/connection-profile.js';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { DOWNLOAD_TOKEN, FakeServer } from './helpers/fake-server.js';
import { tempDir } from './helpers/device.js';
import { firmwareImage, makePacket, testProfile } from './helpers/packets.js';
import { type TestCerts, testCerts } from './helpers/pki.js';
import { CLI, ensureBuilt, ROOT, runAgent } from './helpers/process.js';

let certs: TestCerts;
const dirs: string[] = [];
beforeAll(async () => {
  [certs] = await Promise.all([testCerts(), ensureBuilt()]);
}, 120_000);
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
});

async function dir(): Promise<string> {
  const d = await tempDir('cli-');
  dirs.push(d);
  return d;
}

/** `fleet-agent ARGS` as a real process (stderr collected). */
function spawnCli(args: string[]): { exit: Promise<number | null>; stderr: () => string } {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (c) => {
    err += String(c);
  });
  return { exit: new Promise((resolve) => child.once('close', (code) => resolve(code))), stderr: () => err };
}

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    out += String(chunk);
    return true;
  });
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
    err += String(chunk);
    return true;
  });
  try {
    const code = await main(args);
    return { code, out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

describe('fleet-agent CLI', () => {
  it('version, config table, usage errors', async () => {
    expect((await cli(['version'])).out).toMatch(/^fleet-agent 0\.1\.0 \(protocol 1\.1\)/);
    const table = (await cli(['config'])).out;
    expect(table).toContain('| `--boot-delay-max-sec` / `FLEET_AGENT_BOOT_DELAY_MAX_SEC` | integer | `30` | s |');
    expect((await cli(['nonsense'])).code).toBe(2);
    expect((await cli(['status'])).code).toBe(2);
  });

  it('provision: trust on first use, an explicit anchor, re-provisioning only by the trusted signer', async () => {
    const d = await dir();
    const profile = {
      ...testProfile({ serverUrl: 'wss://fleet.example.com/api/channel', caCertPem: certs.tlsCa.certPem, trustAnchorsPem: [certs.pki.root.certPem] }),
      keepAlive: { pingIntervalSec: 120, pongTimeoutSec: 104, sessionTimeoutSec: 16 },
    };
    expect(profile.format).toBe(CONNECTION_PROFILE_FORMAT);
    const file = (name: string) => join(d, name);
    const signed = await makePacket(certs.pki.signer, [{ name: 'connection-profile.json', fileType: 'ConnectionProfile', data: JSON.stringify(profile) }]);
    await writeFile(file('profile.tar'), signed);
    await writeFile(file('foreign.pem'), certs.pki.foreignCa.certPem);
    await writeFile(file('root.pem'), certs.pki.root.certPem);
    const unsigned = await makePacket(undefined, [{ name: 'connection-profile.json', fileType: 'ConnectionProfile', data: JSON.stringify(profile) }]);
    await writeFile(file('unsigned.tar'), unsigned);

    const refusedUnsigned = await cli(['provision', file('unsigned.tar'), '--data', join(d, 'a')]);
    expect(refusedUnsigned.code).toBe(1);
    expect(refusedUnsigned.err).toContain('PROTO_PACKET_SIGNATURE_MISSING');
    const wrongAnchor = await cli(['provision', file('profile.tar'), '--data', join(d, 'a'), '--trust-anchor', file('foreign.pem')]);
    expect(wrongAnchor.code).toBe(1);
    expect(wrongAnchor.err).toContain('PROTO_PACKET_SIGNER_UNTRUSTED');

    const pinned = await cli(['provision', file('profile.tar'), '--data', join(d, 'b'), '--trust-anchor', file('root.pem')]);
    expect(pinned.code).toBe(0);
    expect(JSON.parse(pinned.out)).toMatchObject({ provisioned: true, trust: 'explicit-anchor', deviceId: 'dev-0001' });

    const tofu = await cli(['provision', file('profile.tar'), '--data', join(d, 'a')]);
    expect(tofu.code).toBe(0);
    expect(JSON.parse(tofu.out).trust).toBe('trust-on-first-use');
    expect(tofu.err).toContain('trust');
    const stored = JSON.parse(await readFile(join(d, 'a', 'agent', 'connection-profile.json'), 'utf8'));
    expect(stored.credential).toBe(profile.credential);

    // Re-provisioning: the installed profile's anchors decide; a foreign signer is refused.
    const foreign = await makePacket(certs.pki.foreignSigner, [
      { name: 'connection-profile.json', fileType: 'ConnectionProfile', data: JSON.stringify({ ...profile, trustAnchorsPem: [certs.pki.foreignCa.certPem] }) },
    ]);
    await writeFile(file('foreign.tar'), foreign);
    const hijack = await cli(['provision', file('foreign.tar'), '--data', join(d, 'a')]);
    expect(hijack.code).toBe(1);
    const again = await cli(['provision', file('profile.tar'), '--data', join(d, 'a')]);
    expect(JSON.parse(again.out).trust).toBe('existing-profile');

    const status = await cli(['status', '--data', join(d, 'a')]);
    expect(status.code).toBe(0);
    const local = JSON.parse(status.out);
    expect(local).toMatchObject({ provisioned: true, profile: { deviceId: 'dev-0001' }, activeJob: null });
    expect(status.out).not.toContain(profile.credential);
  });

  it('run (supervised): a firmware update across the reboot, graceful stop on SIGTERM, no secret in the logs', async () => {
    const server = await new FakeServer({ certPem: certs.tlsServer.certPem, keyPem: certs.tlsServer.keyPem }).start();
    try {
      const d = await dir();
      const profile = testProfile({ serverUrl: server.url, caCertPem: certs.tlsCa.certPem, trustAnchorsPem: [certs.pki.root.certPem], deviceId: 'dev-cli' });
      await mkdir(join(d, 'agent'), { recursive: true });
      await writeFile(join(d, 'agent', 'connection-profile.json'), JSON.stringify(profile));
      const packet = await makePacket(certs.pki.signer, [{ name: 'fw.tar', fileType: 'FirmwareFull', data: firmwareImage('3.1.0'), version: '3.1.0' }]);
      server.addPacket('cli-fw.tar', packet);
      const child = spawn(process.execPath, [CLI, 'run', '--data', d, '--boot-delay-max-sec', '0', '--log-level', 'debug'], {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, FLEET_AGENT_BACKOFF_BASE_MS: '50', FLEET_AGENT_BACKOFF_MAX_MS: '300' },
      });
      let logs = '';
      child.stderr.on('data', (c) => {
        logs += String(c);
      });
      await server.waitFor(() => server.received('status', 'dev-cli')[0], 20_000);
      server.offer('dev-cli', 'exe-cli', 'cli-fw.tar');
      expect((await server.waitForTerminal('exe-cli', 30_000)).body.state).toBe('succeeded');
      expect(server.received('hello', 'dev-cli').at(-1)!.body.firmwareVersion).toBe('3.1.0');
      child.kill('SIGTERM');
      const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
      expect(code).toBe(0);
      expect(server.closes.filter((c) => c.deviceId === 'dev-cli').at(-1)!.code).toBe(1001);
      expect(logs).toContain('"msg":"agent started"');
      expect(logs).not.toContain(profile.credential);
      expect(logs).not.toContain(DOWNLOAD_TOKEN);
    } finally {
      await server.close();
    }
  });

  it('refuses to run without a connection profile: exit 2, and its own supervisor does not restart it', async () => {
    const d = await dir();
    const run = runAgent(d, ['--boot-delay-max-sec', '0']);
    const exit = await run.exit;
    expect(exit.code).toBe(2);
    expect(run.stderr()).toContain('AGENT_NOT_PROVISIONED');

    // Supervised (the default): the child's exit 2 ends the supervisor too, after one attempt.
    const supervised = spawnCli(['run', '--data', d, '--boot-delay-max-sec', '0']);
    expect(await supervised.exit).toBe(2);
    expect(supervised.stderr().match(/AGENT_NOT_PROVISIONED/g)).toHaveLength(1);
  }, 60_000);

  it('one agent per data directory: a second one exits 73 (not restarted), a dead one\'s lock is taken over', async () => {
    const d = await dir();
    const profile = testProfile({ serverUrl: 'wss://127.0.0.1:9/api/channel', caCertPem: certs.tlsCa.certPem, trustAnchorsPem: [certs.pki.root.certPem], deviceId: 'dev-lock' });
    await mkdir(join(d, 'agent'), { recursive: true });
    await writeFile(join(d, 'agent', 'connection-profile.json'), JSON.stringify(profile));
    const started = (run: { stderr: () => string }) =>
      waitFor(() => run.stderr().includes('"msg":"agent started"'), { timeout: 60_000, interval: 50, what: () => `agent started: ${run.stderr()}` });
    const first = runAgent(d, ['--boot-delay-max-sec', '0']);
    await started(first);
    const lock = JSON.parse(await readFile(join(d, 'agent.lock'), 'utf8')) as { pid: number };
    expect(lock.pid).toBe(first.child.pid);

    const second = spawnCli(['run', '--data', d, '--boot-delay-max-sec', '0']); // supervised
    expect(await second.exit).toBe(73);
    expect(second.stderr().match(/AGENT_DATA_DIR_LOCKED/g)).toHaveLength(1);
    expect(second.stderr()).toContain(`pid ${first.child.pid}`);

    first.child.kill('SIGKILL'); // a power cut: the lock stays behind
    await first.exit;
    const third = runAgent(d, ['--boot-delay-max-sec', '0']);
    try {
      await started(third);
      expect((JSON.parse(await readFile(join(d, 'agent.lock'), 'utf8')) as { pid: number }).pid).toBe(third.child.pid);
      third.child.kill('SIGTERM');
      expect((await third.exit).code).toBe(0);
      await expect(readFile(join(d, 'agent.lock'))).rejects.toMatchObject({ code: 'ENOENT' }); // released on a graceful stop
    } finally {
      if (third.child.exitCode === null) third.child.kill('SIGKILL');
    }
  }, 120_000);

  it('bundles into one file that runs outside the repository', async () => {
    const d = await dir();
    const out = join(d, 'fleet-agent.mjs');
    execFileSync(process.execPath, [join(ROOT, 'agent', 'scripts', 'bundle.mjs'), '--outfile', out], { stdio: 'ignore' });
    const text = execFileSync(process.execPath, [out, 'version'], { cwd: d, encoding: 'utf8' });
    expect(text).toMatch(/^fleet-agent 0\.1\.0/);
    expect((await readFile(out, 'utf8')).startsWith('#!/usr/bin/env node')).toBe(true);
  }, 60_000);
});

describe('README', () => {
  it('shows the configuration table as `fleet-agent config` prints it', async () => {
    const { configTableMarkdown } = await import('../src/cli-main.js');
    const readme = await readFile(join(ROOT, 'agent', 'README.md'), 'utf8');
    const section = readme.split('<!-- config-table:start -->\n')[1]!.split('\n<!-- config-table:end -->')[0];
    expect(section).toBe(configTableMarkdown());
  });
});

describe('README error catalogue', () => {
  it('lists exactly the agent error codes', async () => {
    const { errorTableMarkdown } = await import('../src/errors.js');
    const readme = await readFile(join(ROOT, 'agent', 'README.md'), 'utf8');
    const section = readme.split('<!-- error-table:start -->\n')[1]!.split('\n<!-- error-table:end -->')[0];
    expect(section).toBe(errorTableMarkdown());
  });
});
