import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simErrorTableMarkdown } from '../src/errors.js';
import { fleetToCsv, generateFleet } from '../src/fleet-generator.js';
import { PROFILES_FILE, provisionFleet } from '../src/provision.js';
import { ensureSimulatorBuilt, runSim, startSim } from './helpers/cli.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const dirs: string[] = [];
const servers: TestServer[] = [];
beforeAll(() => ensureSimulatorBuilt(), 180_000);
afterAll(async () => {
  for (const s of servers) await s.dispose().catch(() => undefined);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

let shared: Promise<TestServer> | undefined;
/** One HTTPS reference server for the tests that need one (started by the first that asks). */
function tlsServer(): Promise<TestServer> {
  shared ??= startTestServer({ plan: 'basic-25', count: 1 }).then((s) => {
    servers.push(s);
    return s;
  });
  return shared;
}

function dir(): string {
  const d = mkdtempSync(join(tmpdir(), 'fleet-sim-cli-'));
  dirs.push(d);
  return d;
}

/** Neither the whole yargs help nor a stack trace: one line with the code. */
function expectOneLineError(stderr: string, code: string): void {
  expect(stderr).toContain(`fleet-sim: ${code}: `);
  expect(stderr).not.toMatch(/^Options:/m);
  expect(stderr).not.toMatch(/^\s+at /m);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

describe('fleet-sim CLI (the built bin as a real process)', () => {
  it('a usage error is one SIM_USAGE line and exit 2, not the whole help', async () => {
    const missing = await runSim(['run', '--profiles', '/nowhere']);
    expect(missing.code).toBe(2);
    expectOneLineError(missing.stderr, 'SIM_USAGE');
    expect(missing.stderr).toContain('server');
    const unknown = await runSim(['fleet', '--devices', '2', '--no-such-option']);
    expect(unknown.code).toBe(2);
    expectOneLineError(unknown.stderr, 'SIM_USAGE');
    const duration = await runSim(['run', '--server', 'https://127.0.0.1:1', '--profiles', '/nowhere', '--duration', 'soon']);
    expect(duration.code).toBe(2);
    expectOneLineError(duration.stderr, 'SIM_USAGE');
    const transport = await runSim(['run', '--server', 'https://127.0.0.1:1', '--profiles', '/nowhere', '--transport', 'pigeon']);
    expect(transport.code).toBe(2);
    expectOneLineError(transport.stderr, 'SIM_USAGE');
    expect(transport.stderr).toContain('transport');
  }, 60_000);

  it('an unusable --server is SIM_SERVER_URL_INVALID and exit 2 before anything runs', async () => {
    for (const server of ['localhost:8443', 'ftp://127.0.0.1:21', 'not a url', 'https://user:pw@127.0.0.1']) {
      const r = await runSim(['run', '--server', server, '--profiles', '/nowhere', '--duration', '1s']);
      expect(r.code, server).toBe(2);
      expectOneLineError(r.stderr, 'SIM_SERVER_URL_INVALID');
    }
    const provision = await runSim(['provision', '--server', 'tcp://127.0.0.1:1', '--token', 't', '--fleet', '/nowhere.csv', '--out', '/nowhere']);
    expect(provision.code).toBe(2);
    expectOneLineError(provision.stderr, 'SIM_SERVER_URL_INVALID');
  }, 60_000);

  it('an unreachable server is SIM_SERVER_UNREACHABLE and exit 1', async () => {
    const d = dir();
    writeFileSync(join(d, 'fleet.csv'), fleetToCsv(generateFleet({ devices: 2, seed: 1 })));
    const port = await freePort(); // nothing listens there
    const r = await runSim(['provision', '--server', `http://127.0.0.1:${port}`, '--token', 't', '--fleet', join(d, 'fleet.csv'), '--out', d]);
    expect(r.code).toBe(1);
    expectOneLineError(r.stderr, 'SIM_SERVER_UNREACHABLE');
  }, 60_000);

  it('provision: a partly invalid CSV gets a per-row report and exit 3 (all or nothing, then --partial)', async () => {
    const server = await tlsServer();
    const d = dir();
    const fleet = generateFleet({ devices: 5, seed: 7 });
    const lines = fleetToCsv(fleet).trimEnd().split('\n');
    // Line 3 (the second router): a serial number the server refuses; line 6: a duplicate of line 2.
    lines[2] = lines[2]!.replace(fleet[1]!.serialNumber, 'not a serial!');
    lines[5] = lines[5]!.replace(fleet[4]!.serialNumber, fleet[0]!.serialNumber);
    writeFileSync(join(d, 'fleet.csv'), `${lines.join('\n')}\n`);
    const args = ['provision', '--server', server.url, '--ca', server.caFile, '--fleet', join(d, 'fleet.csv')];
    const env = { FLEET_SIM_TOKEN: server.token };

    const refused = await runSim([...args, '--out', join(d, 'all')], env);
    expect(refused.code).toBe(3);
    expectOneLineError(refused.stderr, 'SIM_PROVISION_ROWS_FAILED');
    expect(refused.stderr).toMatch(/^line 3: SERVER_VALIDATION /m);
    expect(refused.stderr).toMatch(/^line 6: SERVER_DEVICE_SERIAL_TAKEN /m);
    expect(JSON.parse(refused.stdout)).toMatchObject({ rows: 5, imported: 0, failed: 2 });
    expect(existsSync(join(d, 'all', PROFILES_FILE))).toBe(false);

    const partial = await runSim([...args, '--out', join(d, 'partial'), '--partial'], env);
    expect(partial.code).toBe(3);
    expectOneLineError(partial.stderr, 'SIM_PROVISION_ROWS_FAILED');
    expect(partial.stderr).toMatch(/^line 3: SERVER_VALIDATION /m);
    expect(JSON.parse(partial.stdout)).toMatchObject({ rows: 5, imported: 3, failed: 2, profiles: 3 });
    expect(readFileSync(join(d, 'partial', PROFILES_FILE), 'utf8').trimEnd().split('\n')).toHaveLength(3);

    // A clean CSV: exit 0.
    writeFileSync(join(d, 'clean.csv'), fleetToCsv(generateFleet({ devices: 2, seed: 8 })));
    const clean = await runSim(['provision', '--server', server.url, '--ca', server.caFile, '--fleet', join(d, 'clean.csv'), '--out', join(d, 'clean')], env);
    expect(clean.stderr).not.toContain('fleet-sim:');
    expect(clean.code).toBe(0);
  }, 180_000);

  it('scenario: a job with failed devices exits 4 (SIM_JOBS_FAILED) and still prints the report', async () => {
    const server = await tlsServer();
    const d = dir();
    writeFileSync(join(d, 'fleet.csv'), fleetToCsv(generateFleet({ devices: 3, seed: 9 })));
    await provisionFleet({ server: server.url, token: server.token, caPem: server.caPem, fleetCsv: join(d, 'fleet.csv'), outDir: d });
    writeFileSync(join(d, 'fail.json'), JSON.stringify({ name: 'install-fails', rules: [{ probability: 1, faults: { install: { failSection: 0 } }, expect: 'failed' }] }));
    const scenario = {
      server: server.url,
      ca: server.caFile,
      profiles: d,
      processes: 0,
      behaviour: join(d, 'fail.json'),
      steps: [
        { step: 'ramp', rate: 50 },
        { step: 'wait-until-admitted', count: 3, timeoutSec: 120 },
        { step: 'create-job', id: 'fw', packet: { firmwareVersion: '99.0.0', sizeBytes: 4096 } },
        { step: 'wait-job', id: 'fw', percent: 100, timeoutSec: 300 },
        { step: 'stop' },
      ],
    };
    writeFileSync(join(d, 'scenario.json'), JSON.stringify(scenario));
    const r = await runSim(['scenario', join(d, 'scenario.json')], { FLEET_SIM_TOKEN: server.token });
    expect(r.stderr).toContain('fleet-sim: SIM_JOBS_FAILED: jobs failed: fw (3 devices failed');
    expect(r.code).toBe(4);
    const report = JSON.parse(r.stdout) as { jobs: Array<{ id: string; results: Record<string, number> }> };
    expect(report.jobs[0]).toMatchObject({ id: 'fw', results: { failed: 3 } });
  }, 400_000);

  it('run --server http://… against a server without TLS: the routers dial ws:// and are admitted', async () => {
    const server = await startTestServer({ plan: 'basic-25', count: 1, tls: false });
    servers.push(server);
    const d = dir();
    writeFileSync(join(d, 'fleet.csv'), fleetToCsv(generateFleet({ devices: 3, seed: 11 })));
    await provisionFleet({ server: server.url, token: server.token, fleetCsv: join(d, 'fleet.csv'), outDir: d });
    const prometheus = await freePort();
    const run = startSim(['run', '--server', server.url, '--profiles', d, '--processes', '0', '--rate', '50', '--duration', '10m', '--prometheus', String(prometheus)]);
    try {
      // Positive signal: three admissions recorded (the routers refused ws:// before the fix).
      await expect
        .poll(async () => {
          if (run.child.exitCode !== null) throw new Error(`fleet-sim exited ${run.child.exitCode}: ${run.stderr()}`);
          try {
            const text = await (await request(`http://127.0.0.1:${prometheus}/metrics`)).body.text();
            return Number(/^fleetsim_admission_ms_count (\d+)$/m.exec(text)?.[1] ?? 0);
          } catch {
            return 0;
          }
        }, { timeout: 120_000, interval: 250 })
        .toBe(3);
      run.child.kill('SIGINT'); // Ctrl-C: stops the run and still prints the report
      expect(await run.exit).toBe(0);
      expect(JSON.parse(run.stdout())).toMatchObject({ devices: 3 });
    } finally {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
    }
  }, 240_000);

  it('run --transport mqtt: the routers dial the broker their profiles name (the server\'s embedded one) and are admitted', async () => {
    const server = await startTestServer({ plan: 'basic-25', count: 1, tls: false, extraArgs: ['--mqtt', 'embedded', '--mqtt-port', '0', '--device-transport', 'mqtt'] });
    servers.push(server);
    const d = dir();
    writeFileSync(join(d, 'fleet.csv'), fleetToCsv(generateFleet({ devices: 3, seed: 12 })));
    await provisionFleet({ server: server.url, token: server.token, fleetCsv: join(d, 'fleet.csv'), outDir: d });
    expect(JSON.parse(readFileSync(join(d, PROFILES_FILE), 'utf8').split('\n')[0]!).profile.serverUrl).toMatch(/^mqtt:\/\/127\.0\.0\.1:\d+$/);
    // Profiles naming a broker are not a WebSocket fleet: refused before anything dials.
    const ws = await runSim(['run', '--server', server.url, '--profiles', d, '--processes', '0', '--duration', '1s', '--transport', 'ws']);
    expect(ws.code).toBe(2);
    expectOneLineError(ws.stderr, 'SIM_FLEET_INVALID');
    const prometheus = await freePort();
    const run = startSim(['run', '--server', server.url, '--profiles', d, '--processes', '0', '--rate', '50', '--duration', '10m', '--prometheus', String(prometheus), '--transport', 'mqtt']);
    try {
      await expect
        .poll(async () => {
          if (run.child.exitCode !== null) throw new Error(`fleet-sim exited ${run.child.exitCode}: ${run.stderr()}`);
          try {
            const text = await (await request(`http://127.0.0.1:${prometheus}/metrics`)).body.text();
            return Number(/^fleetsim_admission_ms_count (\d+)$/m.exec(text)?.[1] ?? 0);
          } catch {
            return 0;
          }
        }, { timeout: 120_000, interval: 250 })
        .toBe(3);
      run.child.kill('SIGINT');
      expect(await run.exit).toBe(0);
      expect(JSON.parse(run.stdout())).toMatchObject({ devices: 3, managed: 3 });
    } finally {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
    }
  }, 240_000);

  it('the README lists the error catalogue with its exit codes and uses the bin name', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const section = /<!-- errors:start -->\n([\s\S]*?)\n<!-- errors:end -->/.exec(readme)?.[1];
    expect(section).toBe(simErrorTableMarkdown());
    expect(readme).not.toContain('node simulator/dist/cli.js');
  });
});
