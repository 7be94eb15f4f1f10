#!/usr/bin/env node
import { readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { DEFAULT_CONNECT_WINDOW } from './fleet.js';
import { fleetToCsv, generateFleet } from './fleet-generator.js';
import { SimError } from './errors.js';
import { type FleetReport, LivePrinter } from './metrics.js';
import { provisionFleet, type RowError, rowReportLines } from './provision.js';
import { RestError } from './rest.js';
import { mergeReports, readReport } from './report-merge.js';
import { failedJobs, loadScenario, runScenario, type Scenario } from './scenario.js';
import { serverUrls } from './server-url.js';
import { formatShard, parseShard } from './shard.js';

/** Parses a duration: `90`, `90s`, `5m`, `1h` → seconds. */
export function parseDuration(text: string | number): number {
  if (typeof text === 'number') return text;
  const m = /^(\d+(?:\.\d+)?)\s*(s|m|h)?$/.exec(text.trim());
  if (!m) throw new TypeError(`not a duration: ${text} (e.g. 90, 90s, 5m, 1h)`);
  return Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1);
}

const token = (t: string | undefined) => {
  const value = t ?? process.env['FLEET_SIM_TOKEN'];
  if (!value) throw new SimError('SIM_TOKEN_MISSING');
  return value;
};

function readInput(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new SimError('SIM_FILE_UNREADABLE', `cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}

function duration(text: string): number {
  try {
    return parseDuration(text);
  } catch (err) {
    throw new SimError('SIM_USAGE', `--duration: ${(err as Error).message}`);
  }
}

/** Error codes of sockets, DNS and TLS that mean "the server is not reachable as given". */
const UNREACHABLE = /^(E(CONNREFUSED|CONNRESET|HOSTUNREACH|NETUNREACH|AI_AGAIN|ADDRNOTAVAIL|PIPE)|ENOTFOUND|UND_ERR_(CONNECT_TIMEOUT|SOCKET|CLOSED)|ERR_TLS_.*|.*CERT.*|UNABLE_TO_.*|SELF_SIGNED.*)$/;

function networkCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; cause?: unknown; errors?: unknown[] } | null;
  if (!e || typeof e !== 'object') return undefined;
  if (typeof e.code === 'string' && UNREACHABLE.test(e.code)) return e.code;
  if (Array.isArray(e.errors)) for (const inner of e.errors) if (networkCode(inner)) return networkCode(inner);
  return e.cause ? networkCode(e.cause) : undefined;
}

/** Any failure as a catalogue error: its code, exit code and a one-line message (never a stack). */
export function toSimError(err: unknown): SimError {
  if (err instanceof SimError) return err;
  if (err instanceof RestError) return new SimError('SIM_SERVER_ERROR', err.message, { cause: err });
  const net = networkCode(err);
  const message = err instanceof Error ? err.message || err.name : String(err);
  if (net) return new SimError('SIM_SERVER_UNREACHABLE', `${net}${message && !message.includes(net) ? `: ${message}` : ''}`, { cause: err });
  return new SimError('SIM_INTERNAL', message, { cause: err });
}

/**
 * `fleet-sim`: deterministic fleets, provisioning, and fleets of virtual routers against a server.
 * Resolves with the process's exit code (see SimErrorCodes): usage errors print one line and a
 * hint, never the whole help; runtime errors print their code and message, never a stack.
 */
export async function runCli(argv: string[]): Promise<number> {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  let code = 0;
  const fail = (err: unknown) => {
    const e = toSimError(err);
    log(`fleet-sim: ${e.code}: ${e.message}`);
    code = e.exitCode;
  };
  // Handlers never throw into yargs (it would print the help and the stack): their errors end here.
  const handle = <A>(fn: (args: A) => Promise<number | void> | number | void) => async (args: A) => {
    try {
      code = (await fn(args)) ?? 0;
    } catch (err) {
      fail(err);
    }
  };
  const parser = yargs(argv)
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
      handle((args) => {
        let fleet;
        try {
          fleet = generateFleet({ devices: args.devices, seed: args.seed, customFields: args['custom-fields'] });
        } catch (err) {
          throw new SimError('SIM_USAGE', `--devices: ${(err as Error).message}`);
        }
        const csv = fleetToCsv(fleet);
        if (args.out) writeFileSync(args.out, csv);
        else process.stdout.write(csv);
      }),
    )
    .command(
      'provision',
      'Register a fleet CSV on the server and fetch every connection profile into DIR/profiles.ndjson',
      (y) =>
        y
          .option('server', { type: 'string', demandOption: true, describe: 'REST base URL (https://host:port; http:// for a server without TLS)' })
          .option('token', { type: 'string', describe: 'Bearer token (default: FLEET_SIM_TOKEN)' })
          .option('fleet', { type: 'string', demandOption: true, describe: 'Fleet CSV (fleet-sim fleet)' })
          .option('out', { type: 'string', demandOption: true, describe: 'Output directory' })
          .option('ca', { type: 'string', describe: 'PEM CA that verifies the server (HTTPS)' })
          .option('partial', { type: 'boolean', default: false, describe: 'Import the valid rows even if some fail (e.g. already registered); exit 3 all the same' }),
      handle(async (args) => {
        const server = serverUrls(args.server).rest;
        const auth = token(args.token);
        const caPem = args.ca ? readInput(args.ca, 'CA') : undefined;
        let result;
        try {
          const { fleet, out: outDir, partial } = args;
          result = await provisionFleet({ server, token: auth, fleetCsv: fleet, outDir, partial, ...(caPem ? { caPem } : {}), log });
        } catch (err) {
          // All or nothing refused: the report says which rows, on stdout like a success's.
          if (err instanceof SimError && err.code === 'SIM_PROVISION_ROWS_FAILED') {
            const report = err.details as { errors: RowError[] };
            for (const line of rowReportLines(report.errors)) log(line);
            process.stdout.write(`${JSON.stringify(err.details)}\n`);
          }
          throw err;
        }
        process.stdout.write(`${JSON.stringify(result)}\n`);
        if (result.failed > 0) {
          for (const line of rowReportLines(result.errors)) log(line);
          throw new SimError(
            'SIM_PROVISION_ROWS_FAILED',
            `${result.failed} of ${result.rows} rows refused (the other ${result.imported} registered; ${result.profiles} profiles written to ${result.file})`,
          );
        }
      }),
    )
    .command(
      'run',
      'Run N virtual routers (the real agent core) against the server for a duration',
      (y) =>
        y
          .option('server', { type: 'string', demandOption: true, describe: 'Server URL: https:// (or wss://); http:// (or ws://) for a server without TLS. REST uses http(s), the routers dial ws(s) on the same host and port' })
          .option('token', { type: 'string', describe: 'Bearer token (default: FLEET_SIM_TOKEN; only needed for jobs)' })
          .option('ca', { type: 'string', describe: 'PEM CA that verifies the server (HTTPS)' })
          .option('profiles', { type: 'string', demandOption: true, describe: 'Directory written by provision' })
          .option('devices', { type: 'number', describe: 'Routers of the fleet (default: every profile)' })
          .option('shard', { type: 'string', describe: 'Run only slice K of N of the fleet (K/N, e.g. 1/2); merge the N reports with fleet-sim report merge' })
          .option('rate', { type: 'number', default: 200, describe: 'Connects per second of the whole fleet (ramp; a shard dials its routers at their slots in it)' })
          .option('window', { type: 'number', default: DEFAULT_CONNECT_WINDOW, describe: 'Connects in flight per process: first connects of the ramp and every later dial (0: no limit)' })
          .option('processes', { type: 'number', describe: 'Child processes (0: this process; default one per 15,000 routers)' })
          .option('behaviour', { type: 'string', default: 'ideal', describe: 'ideal | realistic | hostile | FILE.json' })
          .option('duration', { type: 'string', default: '60s', describe: 'How long to run (90, 90s, 5m, 1h)' })
          .option('report', { type: 'string', describe: 'Final JSON report file' })
          .option('seed', { type: 'number', default: 1, describe: 'Seed of the fault draws and every router\'s randomness' })
          .option('prometheus', { type: 'number', describe: 'Serve /metrics on 127.0.0.1:PORT' })
          .option('analytics-sample-sec', { type: 'number', describe: 'Analytics sample period of the routers (s; with consent)' })
          .option('status-interval-sec', { type: 'number', describe: 'Status report period of the routers (s)' })
          .option('transport', { type: 'string', choices: ['ws', 'mqtt'], default: 'ws', describe: 'Control channel of the routers: ws (WebSocket to --server) or mqtt (through the broker their profiles name; provision them from a server with deviceTransport mqtt)' }),
      handle(async (args) => {
        const urls = serverUrls(args.server);
        const sec = duration(args.duration);
        const shard = args.shard !== undefined ? parseShard(args.shard) : undefined;
        const scenario: Scenario = {
          server: urls.rest,
          ...(shard ? { shard } : {}),
          ...(args.token ? { token: args.token } : {}),
          ...(args.ca ? { ca: args.ca } : {}),
          profiles: args.profiles,
          ...(args.devices !== undefined ? { devices: args.devices } : {}),
          ...(args.processes !== undefined ? { processes: args.processes } : {}),
          behaviour: args.behaviour,
          seed: args.seed,
          channelOrigin: urls.channelOrigin,
          transport: args.transport === 'mqtt' ? 'mqtt' : 'ws',
          agent: {
            ...(args['analytics-sample-sec'] ? { analyticsSampleSec: args['analytics-sample-sec'] } : {}),
            ...(args['status-interval-sec'] ? { statusIntervalSec: args['status-interval-sec'] } : {}),
          },
          ...(args.report ? { report: args.report } : {}),
          ...(args.prometheus !== undefined ? { prometheus: args.prometheus } : {}),
          steps: [{ step: 'ramp', rate: args.rate, window: args.window }, { step: 'wait', sec }, { step: 'stop' }],
        };
        await runAndPrint(scenario, log);
      }),
    )
    .command(
      'scenario <file>',
      'Run a scripted timeline (ramp, wait-until-admitted, create-job, wait-job, cut-connections, restart-devices, wait, stop)',
      (y) =>
        y
          .positional('file', { type: 'string', demandOption: true })
          .option('report', { type: 'string', describe: 'Final JSON report file (overrides the scenario)' })
          .option('prometheus', { type: 'number', describe: 'Serve /metrics on 127.0.0.1:PORT' }),
      handle(async (args) => {
        const scenario = loadScenario(args.file);
        if (args.report) scenario.report = args.report;
        if (args.prometheus !== undefined) scenario.prometheus = args.prometheus;
        const report = await runAndPrint(scenario, log);
        const failed = failedJobs(report);
        if (failed.length > 0) {
          const list = failed.map((j) => `${j.id} (${j.failedDevices} devices failed${j.state ? `, job ${j.state}` : ''})`).join(', ');
          throw new SimError('SIM_JOBS_FAILED', `jobs failed: ${list}; the report has every device result`);
        }
      }),
    )
    .command(
      'report',
      'Work with run reports: report merge A.json B.json … merges the reports of the shards of one fleet',
      (y) =>
        y
          .command(
            'merge <reports..>',
            'Merge the reports of the shards of one fleet (fleet-sim run --shard K/N) into the report of the whole fleet',
            (m) =>
              m
                .positional('reports', { type: 'string', array: true, demandOption: true, describe: 'Report files (--report of each shard)' })
                .option('out', { type: 'string', describe: 'Merged JSON report file (default: standard output)' })
                .option('allow-missing', { type: 'boolean', default: false, describe: 'Merge even if some shards have no report (the merged report lists them in merged.missing)' }),
            handle((args) => {
              const files = args.reports ?? [];
              const merged = mergeReports(files.map((file) => ({ file, report: readReport(file) })), { allowMissing: args['allow-missing'] });
              if (merged.merged!.missing.length) {
                log(`warning: no report of shard ${merged.merged!.missing.map((k) => formatShard({ index: k, count: merged.shard.count })).join(', ')}: the merged report counts the routers of the others only`);
              }
              const text = `${JSON.stringify(merged, null, 2)}\n`;
              if (args.out) writeFileSync(args.out, text);
              else process.stdout.write(text);
              const h = merged.histograms['connect'];
              log(`merged ${files.length} reports (shards ${merged.shard.indices.join(', ')} of ${merged.shard.count}; ${merged.devices} routers): managed ${merged.managed}, rejected ${merged.rejected}${h ? `; connect p50 ${h.p50} ms p99 ${h.p99} ms` : ''}; rss/router ${merged.memory.rssPerRouterBytes} B${args.out ? `; written to ${args.out}` : ''}`);
            }),
          )
          .demandCommand(1)
          .strict(),
    )
    .demandCommand(1)
    .strict()
    .help()
    .showHelpOnFail(false)
    .fail((message, error) => {
      // Usage errors (unknown option, missing argument): one line, not the whole help; thrown so
      // that yargs stops there instead of running the command without its arguments.
      throw error ?? new SimError('SIM_USAGE', `${message} (fleet-sim --help lists the commands and options)`);
    });
  try {
    await parser.parseAsync();
  } catch (err) {
    fail(err);
  }
  return code;
}

async function runAndPrint(scenario: Scenario, log: (line: string) => void): Promise<FleetReport> {
  const live = new LivePrinter(process.stderr);
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const report = await runScenario(scenario, { log, live, signal: stop.signal });
  if (!scenario.report) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else log(`report written to ${scenario.report}`);
  const h = report.histograms;
  const shard = report.shard.count > 1 ? `shard ${report.shard.indices[0]}/${report.shard.count} (${report.devices} of the fleet's ${report.fleet.routers} routers): ` : '';
  log(`${shard}managed ${report.managed}, rejected ${report.rejected}; connect p50 ${h['connect']!.p50} ms p99 ${h['connect']!.p99} ms; rss/router ${report.memory.rssPerRouterBytes} B`);
  return report;
}

function isEntryPoint(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

/** Runs the command line and sets the exit status (the `fleet-sim` executable): 0, or the code of the failure. */
export function cliMain(argv: string[] = hideBin(process.argv)): Promise<void> {
  return runCli(argv).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      const e = toSimError(err);
      process.stderr.write(`fleet-sim: ${e.code}: ${e.message}\n`);
      process.exitCode = e.exitCode;
    },
  );
}

if (isEntryPoint()) void cliMain();
