#!/usr/bin/env node
import { readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { DEFAULT_CONNECT_WINDOW } from './fleet.js';
import { fleetToCsv, generateFleet } from './fleet-generator.js';
import { LivePrinter } from './metrics.js';
import { provisionFleet } from './provision.js';
import { loadScenario, runScenario, type Scenario } from './scenario.js';

/** Parses a duration: `90`, `90s`, `5m`, `1h` → seconds. */
export function parseDuration(text: string | number): number {
  if (typeof text === 'number') return text;
  const m = /^(\d+(?:\.\d+)?)\s*(s|m|h)?$/.exec(text.trim());
  if (!m) throw new TypeError(`not a duration: ${text} (e.g. 90, 90s, 5m, 1h)`);
  return Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1);
}

const token = (t: string | undefined) => {
  const value = t ?? process.env['FLEET_SIM_TOKEN'];
  if (!value) throw new Error('--token or FLEET_SIM_TOKEN is required');
  return value;
};

/** `fleet-sim`: deterministic fleets, provisioning, and fleets of virtual routers against a server. */
export async function runCli(argv: string[]): Promise<void> {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  await yargs(argv)
    .scriptName('fleet-sim')
    .command(
      'fleet',
      'Write a deterministic fleet as the CSV the server imports',
      (y) =>
        y
          .option('devices', { type: 'number', demandOption: true, describe: 'Number of routers' })
          .option('seed', { type: 'number', default: 1, describe: 'Generator seed: same seed, same CSV byte for byte' })
          .option('out', { type: 'string', describe: 'Output file (default: standard output)' })
          .option('custom-fields', { type: 'boolean', default: true, describe: 'Add custom fields (a paid-plan feature)' }),
      (args) => {
        const csv = fleetToCsv(generateFleet({ devices: args.devices, seed: args.seed, customFields: args['custom-fields'] }));
        if (args.out) writeFileSync(args.out, csv);
        else process.stdout.write(csv);
      },
    )
    .command(
      'provision',
      'Register a fleet CSV on the server and fetch every connection profile into DIR/profiles.ndjson',
      (y) =>
        y
          .option('server', { type: 'string', demandOption: true, describe: 'REST base URL (https://host:port)' })
          .option('token', { type: 'string', describe: 'Bearer token (default: FLEET_SIM_TOKEN)' })
          .option('fleet', { type: 'string', demandOption: true, describe: 'Fleet CSV (fleet-sim fleet)' })
          .option('out', { type: 'string', demandOption: true, describe: 'Output directory' })
          .option('ca', { type: 'string', describe: 'PEM CA that verifies the server (HTTPS)' })
          .option('partial', { type: 'boolean', default: false, describe: 'Import the valid rows even if some fail (e.g. already registered)' }),
      async (args) => {
        const result = await provisionFleet({
          server: args.server,
          token: token(args.token),
          fleetCsv: args.fleet,
          outDir: args.out,
          partial: args.partial,
          ...(args.ca ? { caPem: readFileSync(args.ca, 'utf8') } : {}),
          log,
        });
        process.stdout.write(`${JSON.stringify(result)}\n`);
      },
    )
    .command(
      'run',
      'Run N virtual routers (the real agent core) against the server for a duration',
      (y) =>
        y
          .option('server', { type: 'string', demandOption: true, describe: 'Server base URL; the routers dial its control channel' })
          .option('token', { type: 'string', describe: 'Bearer token (default: FLEET_SIM_TOKEN; only needed for jobs)' })
          .option('ca', { type: 'string', describe: 'PEM CA that verifies the server (HTTPS)' })
          .option('profiles', { type: 'string', demandOption: true, describe: 'Directory written by provision' })
          .option('devices', { type: 'number', describe: 'Routers (default: every profile)' })
          .option('rate', { type: 'number', default: 200, describe: 'Connects per second (ramp)' })
          .option('window', { type: 'number', default: DEFAULT_CONNECT_WINDOW, describe: 'Connects in flight per process: first connects of the ramp and every later dial (0: no limit)' })
          .option('processes', { type: 'number', describe: 'Child processes (0: this process; default one per 15,000 routers)' })
          .option('behaviour', { type: 'string', default: 'ideal', describe: 'ideal | realistic | hostile | FILE.json' })
          .option('duration', { type: 'string', default: '60s', describe: 'How long to run (90, 90s, 5m, 1h)' })
          .option('report', { type: 'string', describe: 'Final JSON report file' })
          .option('seed', { type: 'number', default: 1, describe: 'Seed of the fault draws and every router\'s randomness' })
          .option('prometheus', { type: 'number', describe: 'Serve /metrics on 127.0.0.1:PORT' })
          .option('analytics-sample-sec', { type: 'number', describe: 'Analytics sample period of the routers (s; with consent)' })
          .option('status-interval-sec', { type: 'number', describe: 'Status report period of the routers (s)' }),
      async (args) => {
        const scenario: Scenario = {
          server: args.server,
          ...(args.token ? { token: args.token } : {}),
          ...(args.ca ? { ca: args.ca } : {}),
          profiles: args.profiles,
          ...(args.devices !== undefined ? { devices: args.devices } : {}),
          ...(args.processes !== undefined ? { processes: args.processes } : {}),
          behaviour: args.behaviour,
          seed: args.seed,
          channelOrigin: args.server,
          agent: {
            ...(args['analytics-sample-sec'] ? { analyticsSampleSec: args['analytics-sample-sec'] } : {}),
            ...(args['status-interval-sec'] ? { statusIntervalSec: args['status-interval-sec'] } : {}),
          },
          ...(args.report ? { report: args.report } : {}),
          ...(args.prometheus !== undefined ? { prometheus: args.prometheus } : {}),
          steps: [{ step: 'ramp', rate: args.rate, window: args.window }, { step: 'wait', sec: parseDuration(args.duration) }, { step: 'stop' }],
        };
        await runAndPrint(scenario, log);
      },
    )
    .command(
      'scenario <file>',
      'Run a scripted timeline (ramp, wait-until-admitted, create-job, wait-job, cut-connections, restart-devices, wait, stop)',
      (y) =>
        y
          .positional('file', { type: 'string', demandOption: true })
          .option('report', { type: 'string', describe: 'Final JSON report file (overrides the scenario)' })
          .option('prometheus', { type: 'number', describe: 'Serve /metrics on 127.0.0.1:PORT' }),
      async (args) => {
        const scenario = loadScenario(args.file);
        if (args.report) scenario.report = args.report;
        if (args.prometheus !== undefined) scenario.prometheus = args.prometheus;
        await runAndPrint(scenario, log);
      },
    )
    .demandCommand(1)
    .strict()
    .help()
    .parseAsync();
}

async function runAndPrint(scenario: Scenario, log: (line: string) => void): Promise<void> {
  const live = new LivePrinter(process.stderr);
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const report = await runScenario(scenario, { log, live, signal: stop.signal });
  if (!scenario.report) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else log(`report written to ${scenario.report}`);
  const h = report.histograms;
  log(`managed ${report.managed}, rejected ${report.rejected}; connect p50 ${h['connect']!.p50} ms p99 ${h['connect']!.p99} ms; rss/router ${report.memory.rssPerRouterBytes} B`);
}

function isEntryPoint(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

/** Runs the command line and exits with status 1 on an error (the `fleet-sim` executable). */
export function cliMain(argv: string[] = hideBin(process.argv)): Promise<void> {
  return runCli(argv).catch((err: unknown) => {
    console.error(`fleet-sim: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}

if (isEntryPoint()) void cliMain();
