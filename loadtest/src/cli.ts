#!/usr/bin/env node
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ApiResult, runApi } from './api.js';
import { runBaseline } from './baseline.js';
import { DEFAULT_DEVICES_PER_BROKER } from './brokers.js';
import { LoadtestError } from './errors.js';
import { measureMqttFloor } from './mqtt-floor.js';
import { activateLicences, login, prepareTenant, startServer } from './local-server.js';
import { API_SCENARIOS } from './scenarios/api.js';
import { compareScaleCounts, readScaleCounts } from './compare-counts.js';
import { checkScaleOptions, DEFAULT_SCALE_RATE, runScale } from './scale.js';
import { seedAccount } from './seed.js';

/** `fleet-loadtest`: baseline, API scenarios and end-to-end scale runs (loopback only; every run stops by itself). */
export async function runCli(argv: string[]): Promise<void> {
  await yargs(argv)
    .scriptName('fleet-loadtest')
    .command(
      'baseline',
      'Measure a bare ws server and bare ws clients: the floor our costs are reported against',
      (y) =>
        y
          .option('connections', { type: 'number', default: 10_000, describe: 'Connections (≤ 18,000: one server process)' })
          .option('processes', { type: 'number', default: 2, describe: 'Client processes' })
          .option('sources', { type: 'number', default: 4, describe: 'Source addresses 127.0.0.1…n' })
          .option('json', { type: 'boolean', default: false, describe: 'Print one JSON line' }),
      async (args) => {
        if (args.connections > 18_000) {
          throw new Error('--connections above 18,000 would exceed one process’s 20,000 open files');
        }
        const { connections, processes, sources } = args;
        const result = await runBaseline({ connections, processes, sourceAddresses: sources });
        if (args.json) console.log(JSON.stringify({ name: 'baseline raw ws', ...result }));
        else {
          console.log(`raw ws baseline: ${result.connections} connections (${result.failed} failed)`);
          console.log(`  connects/s ${result.connectsPerSec}; connect p50 ${result.connectMs.p50} ms, p99 ${result.connectMs.p99} ms`);
          console.log(`  server ${(result.serverBytesPerConnection / 1024).toFixed(1)} KB/connection (heap ${(result.serverHeapBytesPerConnection / 1024).toFixed(1)} KB), client ${(result.clientBytesPerConnection / 1024).toFixed(1)} KB/connection`);
        }
      },
    )
    .command(
      'mqtt-floor',
      'Measure Mosquitto and plain mqtt clients (no agent, no server): the floor MQTT runs are reported against',
      (y) =>
        y
          .option('clients', { type: 'number', default: 5000, describe: 'MQTT clients, each a device account of its own' })
          .option('devices-per-broker', { type: 'number', default: DEFAULT_DEVICES_PER_BROKER, describe: 'Most clients one broker holds (more clients: more brokers, sharded by bucket)' })
          .option('processes', { type: 'number', describe: 'Client processes (default one per 15,000 clients)' })
          .option('window', { type: 'number', default: 64, describe: 'Clients in flight per process (Mosquitto listens with a backlog of 100)' })
          .option('sources', { type: 'number', default: 4, describe: 'Source addresses 127.0.0.1…n' })
          .option('mqtt-version', { type: 'number', choices: [4, 5], default: 5, describe: 'MQTT 5 or 3.1.1 (4)' })
          .option('json', { type: 'boolean', default: false, describe: 'Print one JSON line' }),
      async (args) => {
        if (!Number.isInteger(args.clients) || args.clients < 1) throw new LoadtestError('LOADTEST_USAGE', '--clients must be a positive whole number');
        if (!Number.isInteger(args.window) || args.window < 1) throw new LoadtestError('LOADTEST_USAGE', '--window must be a positive whole number');
        const result = await measureMqttFloor({
          clients: args.clients,
          devicesPerBroker: args['devices-per-broker'],
          ...(args.processes ? { processes: args.processes } : {}),
          window: args.window,
          sourceAddresses: args.sources,
          protocolVersion: args['mqtt-version'] === 4 ? 4 : 5,
          log: (t) => console.error(t),
        });
        if (args.json) console.log(JSON.stringify({ name: 'floor raw mqtt', ...result }));
        else {
          console.log(`raw mqtt floor: ${result.clients} clients on ${result.brokers} broker(s) (${result.failed} failed), MQTT ${result.protocolVersion === 5 ? '5' : '3.1.1'}`);
          console.log(`  connects + round trips/s ${result.connectsPerSec}; connect p50 ${result.connectMs.p50} ms, p99 ${result.connectMs.p99} ms; round trip p50 ${result.roundTripMs.p50} ms, p99 ${result.roundTripMs.p99} ms`);
          console.log(`  broker ${(result.brokerHeapBytesPerClient / 1024).toFixed(1)} KiB heap/client (RSS ${(result.brokerBytesPerClient / 1024).toFixed(1)} KiB), client ${(result.clientBytesPerClient / 1024).toFixed(1)} KiB/client`);
          console.log(`  broker start: hashing ${result.brokerTimings.hashMs} ms, files ${result.brokerTimings.writeMs} ms, listening after ${result.brokerTimings.startMs} ms`);
          for (const e of result.errors) console.log(`  failed: ${e}`);
        }
        process.exitCode = result.failed === 0 ? 0 : 1;
      },
    )
    .command(
      'seed',
      'Seed an account through the REST API: a deterministic fleet and one update job to all of it',
      (y) =>
        y
          .option('url', { type: 'string', demandOption: true, describe: 'Server base URL (http://127.0.0.1:PORT)' })
          .option('token', { type: 'string', demandOption: true, describe: 'Bearer token (login or API token)' })
          .option('devices', { type: 'number', default: 50_000, describe: 'Devices to register' })
          .option('seed', { type: 'number', default: 7, describe: 'Fleet generator seed' }),
      async (args) => {
        console.log(JSON.stringify(await seedAccount(args.url, args.token, { devices: args.devices, seed: args.seed })));
      },
    )
    .command(
      'api',
      'autocannon scenarios against the REST API; prints req/s, p50/p99 and errors; exit code = verdict',
      (y) =>
        y
          .option('url', { type: 'string', describe: 'Server base URL (omit with --local)' })
          .option('token', { type: 'string', describe: 'Bearer token (omit with --local)' })
          .option('scenario', { type: 'string', array: true, describe: `Scenario(s): ${API_SCENARIOS.map((s) => s.name).join(', ')} (default all)` })
          .option('local', { type: 'boolean', default: false, describe: 'Start a server with its own data directory and seed it first' })
          .option('devices', { type: 'number', default: 50_000, describe: 'With --local: devices to seed' })
          .option('duration', { type: 'number', describe: 'Override every scenario’s duration (s)' })
          .option('json', { type: 'boolean', default: false, describe: 'Print JSON lines instead of a table' }),
      async (args) => {
        let url = args.url;
        let token = args.token;
        let cleanup = async () => {};
        if (args.local) {
          const dataDir = mkdtempSync(join(tmpdir(), 'fleet-loadtest-api-'));
          const tenant = await prepareTenant(dataDir, { plan: 'pro', licences: Math.max(1, Math.ceil(args.devices / 100)) });
          const server = await startServer({ dataDir });
          cleanup = async () => {
            await server.stop();
            rmSync(dataDir, { recursive: true, force: true });
          };
          try {
            url = server.url;
            token = await login(url, tenant);
            await activateLicences(url, token, tenant.codes);
            const seeded = await seedAccount(url, token, { devices: args.devices });
            console.error(`seeded ${seeded.devices} devices in ${seeded.importSec} s (CSV import)`);
          } catch (err) {
            await cleanup();
            throw err;
          }
        }
        if (!url || !token) throw new Error('give --url and --token, or --local');
        try {
          const { pass, results } = await runApi(url, token, args.scenario, args.duration ? { durationSec: args.duration } : {});
          for (const r of results) console.log(args.json ? JSON.stringify(r) : formatApiResult(r));
          console.log(pass ? 'PASS' : 'FAIL');
          process.exitCode = pass ? 0 : 1;
        } finally {
          await cleanup();
        }
      },
    )
    .command(
      'scale',
      'End-to-end scale run: server, licences, fleet, admission, one job to all, a restart; checks and a report',
      (y) =>
        y
          .option('devices', { type: 'number', demandOption: true, describe: 'Virtual routers' })
          .option('licences', { type: 'number', demandOption: true, describe: 'Devices the account may manage at once' })
          .option('workers', { type: 'number', describe: 'Server worker processes, of each server process (default: one per 15,000 routers)' })
          .option('store', { type: 'string', default: 'sqlite', describe: 'The servers\' store: sqlite (the file in the run\'s data directory), postgres (a database of the run\'s own on PGHOST/PGPORT, default 127.0.0.1:5432 user postgres, dropped at the end) or a postgres:// URL of an empty database' })
          .option('servers', { type: 'number', default: 1, describe: 'Independent fleet-server serve processes on the one store (own port and data directory each; needs --store postgres); the fleet is spread over them' })
          .option('processes', { type: 'number', describe: 'Simulator processes (default: one per 15,000 routers); with --shards, of each shard' })
          .option('shards', { type: 'number', default: 1, describe: 'Run the simulator as N shards of the fleet file (as fleet-sim run --shard k/N would on N machines); its figures are the merge of their reports' })
          .option('rate', { type: 'number', default: DEFAULT_SCALE_RATE, describe: 'Connects per second asked of the simulator' })
          .option('report', { type: 'string', default: 'reports/scale.json', describe: 'JSON report path (.md and SVG charts beside it)' })
          .option('tls', { type: 'boolean', default: true, describe: 'Run over TLS with a local CA; --no-tls runs plain ws/http (the report says which)' })
          .option('baseline', { type: 'boolean', default: true, describe: 'Measure the raw-ws baseline in the same run' })
          .option('timeout', { type: 'number', default: 15, describe: 'Overall time limit, minutes (the run stops by itself)' })
          .option('job-concurrency', { type: 'number', describe: 'The update job\'s rollout limit: most executions in flight at once (default: none)' })
          .option('transport', { type: 'string', choices: ['ws', 'mqtt'], default: 'ws', describe: 'Control channel: ws (the server holds the sockets) or mqtt (Mosquitto brokers of the run\'s own hold them)' })
          .option('devices-per-broker', { type: 'number', describe: `With --transport mqtt: most routers one broker holds (default ${DEFAULT_DEVICES_PER_BROKER})` })
          .option('server-node-args', { type: 'string', describe: 'Node options of the server\'s processes, space-separated (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the run)' })
          .option('sim-node-args', { type: 'string', describe: 'Node options of the simulator\'s processes, space-separated (as --server-node-args)' }),
      async (args) => {
        if (args['devices-per-broker'] !== undefined && args.transport !== 'mqtt') {
          throw new LoadtestError('LOADTEST_USAGE', '--devices-per-broker applies to --transport mqtt only');
        }
        if (!Number.isInteger(args.shards) || args.shards < 1 || args.shards > args.devices) {
          throw new LoadtestError('LOADTEST_USAGE', `--shards must be an integer from 1 to --devices, not ${args.shards}`);
        }

        checkScaleOptions({ servers: args.servers, store: args.store, transport: args.transport === 'mqtt' ? 'mqtt' : 'ws' });
        const result = await runScale({
          devices: args.devices,
          licences: args.licences,
          store: args.store,
          servers: args.servers,
          ...(args.workers ? { workers: args.workers } : {}),
          ...(args.processes ? { processes: args.processes } : {}),
          ...(args.shards > 1 ? { shards: args.shards } : {}),
          rate: args.rate,
          tls: args.tls,
          timeoutMs: args.timeout * 60_000,
          ...(args.jobConcurrency ? { jobConcurrency: args.jobConcurrency } : {}),
          transport: args.transport === 'mqtt' ? 'mqtt' : 'ws',
          ...(args['devices-per-broker'] ? { devicesPerBroker: args['devices-per-broker'] } : {}),
          ...(args['server-node-args'] ? { serverNodeArgs: args['server-node-args'].split(' ').filter(Boolean) } : {}),
          ...(args['sim-node-args'] ? { simulatorNodeArgs: args['sim-node-args'].split(' ').filter(Boolean) } : {}),
          report: args.report,
          baseline: args.baseline,
          exitOnSignal: true,
          log: (t) => console.error(t),
        });
        for (const c of result.checks) console.log(`${c.pass ? 'pass' : 'FAIL'}  ${c.name}: ${c.detail}`);
        console.log(`${result.pass ? 'PASS' : 'FAIL'} in ${result.durationSec} s; report ${args.report}`);
        process.exitCode = result.pass ? 0 : 1;
      },
    )
    .command(
      'compare-counts <a> <b>',
      'Compare the counts of two scale reports (managed, refused, jobs finished, routers per state), e.g. a sharded run against the single run; exit code 1 when they differ',
      (y) =>
        y
          .positional('a', { type: 'string', demandOption: true, describe: 'A scale report (.json)' })
          .positional('b', { type: 'string', demandOption: true, describe: 'Another scale report (.json)' }),
      (args) => {
        const a = readScaleCounts(args.a);
        const b = readScaleCounts(args.b);
        const diff = compareScaleCounts(a, b);
        console.log(`${args.a}: ${a.managed} managed, ${a.refused} refused, ${a.jobsFinished} jobs finished (${a.jobSucceeded} succeeded on the server)`);
        console.log(`${args.b}: ${b.managed} managed, ${b.refused} refused, ${b.jobsFinished} jobs finished (${b.jobSucceeded} succeeded on the server)`);
        for (const d of diff) console.log(`differs: ${d.name} ${d.a} ≠ ${d.b}`);
        console.log(diff.length ? `DIFFER in ${diff.length} count(s)` : 'SAME counts');
        process.exitCode = diff.length ? 1 : 0;
      },
    )
    .demandCommand(1)
    .strict()
    .help()
    .showHelpOnFail(false)
    .fail((message, error) => {
      // One line with a code instead of the whole help and a stack: thrown to cliMain.
      throw error ?? new LoadtestError('LOADTEST_USAGE', `${message} (fleet-loadtest --help lists the commands and options)`);
    })
    .parseAsync();
}

function formatApiResult(r: ApiResult): string {
  if (r.skipped) return `${r.scenario.padEnd(16)} skipped: ${r.skipped}`;
  const verdict = r.pass ? 'pass' : `FAIL (${r.failures!.join('; ')})`;
  return `${r.scenario.padEnd(16)} ${String(r.rps).padStart(6)} req/s  p50 ${String(r.p50Ms).padStart(5)} ms  p99 ${String(r.p99Ms).padStart(5)} ms  errors ${r.errors! + r.non2xx!}/${r.requests}  ${verdict}`;
}

/** Runs the command line and exits with status 1 on an error (the `fleet-loadtest` executable). */
export function cliMain(argv: string[] = hideBin(process.argv)): Promise<void> {
  return runCli(argv).catch((err: unknown) => {
    if (err instanceof LoadtestError) {
      console.error(`fleet-loadtest: ${err.code}: ${err.message}`);
      process.exit(err.exitCode);
    }
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}

if (import.meta.url === `file://${process.argv[1]}`) void cliMain();
