import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PROTOCOL_VERSION } from '@router-fleet/protocol';
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { createAgent } from './agent.js';
import { type AgentConfig, CONFIG_TABLE, type ConfigInput, envName, flagName, loadConfig, readAgentConfigFile } from './config.js';
import { lockDataDir } from './data-dir-lock.js';
import { AgentError } from './errors.js';
import { exitCodeOf, NO_RESTART_EXIT_CODES } from './exit-codes.js';
import { profileFromConfig, readLocalStatus } from './local-status.js';
import { createLogger } from './logger.js';
import { createEmulatedPlatform, REBOOT_EXIT_CODE } from './platform/emulated.js';
import { type Faults, parseFaults } from './platform/faults.js';
import { FileBlobStore } from './platform/emulated.js';
import { prefixedStorage } from './platform/memory.js';
import { createMemoryPlatform } from './platform/memory.js';
import { provision } from './provision.js';
import { AGENT_VERSION } from './version.js';

/*
 * fleet-agent: run | provision | status | version | config.
 * Exit codes (exit-codes.ts): 0 stopped, 1 error, 2 usage, configuration or not provisioned (do not
 * restart), 73 data directory locked by another agent (do not restart), 75 reboot requested
 * (a supervisor starts the agent again).
 */

function configOptions(y: Argv): Argv {
  let out = y.option('config', { type: 'string', describe: 'JSON configuration file' });
  for (const spec of CONFIG_TABLE) {
    const type = spec.type === 'integer' ? 'number' : spec.type;
    const def = spec.default === null ? 'unset' : spec.default === undefined ? 'required' : String(spec.default);
    out = out.option(flagName(spec.name), {
      type,
      describe: `${spec.description} [${spec.unit}; default ${def}; env ${envName(spec.name)}]`,
      ...(spec.name === 'dataDir' ? { alias: 'data' } : {}),
    });
  }
  return out;
}

async function resolve(argv: Record<string, unknown>): Promise<AgentConfig> {
  const flags: ConfigInput = {};
  for (const spec of CONFIG_TABLE) {
    const value = argv[spec.name];
    if (value !== undefined) (flags as Record<string, unknown>)[spec.name] = value;
  }
  let file: ConfigInput | undefined;
  const configPath = (argv.config as string | undefined) ?? process.env.FLEET_AGENT_CONFIG;
  if (configPath) file = readAgentConfigFile(configPath);
  return loadConfig({ flags, env: process.env, ...(file ? { file } : {}) });
}

function faultsOf(argv: Record<string, unknown>): Faults {
  const raw = argv.fault;
  const list = raw === undefined ? [] : Array.isArray(raw) ? raw.map(String) : [String(raw)];
  return parseFaults(list);
}

async function supervise(argv: Record<string, unknown>, faults: Faults): Promise<number> {
  const args = [...process.execArgv, process.argv[1]!, ...hideBin(process.argv), '--no-supervise'];
  let child: ReturnType<typeof spawn> | undefined;
  let stopping = false;
  const forward = (signal: NodeJS.Signals) => {
    stopping = true;
    child?.kill(signal);
  };
  process.on('SIGTERM', () => forward('SIGTERM'));
  process.on('SIGINT', () => forward('SIGINT'));
  let crashes = 0;
  for (;;) {
    child = spawn(process.execPath, args, { stdio: 'inherit' });
    const code: number = await new Promise((resolveExit) => child!.once('exit', (c, signal) => resolveExit(c ?? (signal ? 128 : 1))));
    if (stopping) return code === REBOOT_EXIT_CODE ? 0 : code;
    if (code === 0) return 0;
    // The same start would fail the same way (not provisioned, bad configuration, directory taken).
    if (NO_RESTART_EXIT_CODES.includes(code)) return code;
    if (code === REBOOT_EXIT_CODE) {
      crashes = 0;
      await new Promise((r) => setTimeout(r, faults.reboot?.durationMs ?? 0));
      continue;
    }
    crashes++;
    // A crashing agent is restarted, slower and slower (the journal's restart counter breaks job loops).
    await new Promise((r) => setTimeout(r, Math.min(60_000, 1000 * 2 ** Math.min(crashes, 6))));
    void argv;
  }
}

async function run(argv: Record<string, unknown>): Promise<number> {
  const config = await resolve(argv);
  const faults = faultsOf(argv);
  if (config.supervise && argv.supervise !== false && config.platform === 'emulated') return supervise(argv, faults);
  // Before anything touches the directory: a second agent on it would corrupt the journal.
  const lock = config.platform === 'emulated' ? await lockDataDir(config.dataDir) : undefined;
  try {
    return await runLocked(config, faults);
  } finally {
    await lock?.release();
  }
}

async function runLocked(config: AgentConfig, faults: Faults): Promise<number> {
  const log = createLogger(config.logLevel);
  const platform =
    config.platform === 'memory'
      ? await createMemoryPlatform({ faults, model: config.emulatedModel, firmwareVersion: config.emulatedFirmwareVersion })
      : await createEmulatedPlatform({
          dataDir: config.dataDir,
          faults,
          model: config.emulatedModel,
          firmwareVersion: config.emulatedFirmwareVersion,
          ...(config.emulatedSerialNumber ? { serialNumber: config.emulatedSerialNumber } : {}),
          ...(config.stagingQuotaBytes !== null ? { stagingQuotaBytes: config.stagingQuotaBytes } : {}),
        });
  const profile = await profileFromConfig(config);
  const agent = createAgent(config, platform, { logger: log, ...(profile ? { profile } : {}) });
  const stop = () => {
    log.info('stopping (signal)');
    const hard = setTimeout(() => process.exit(1), config.stopTimeoutSec * 1000);
    hard.unref();
    void agent.stop();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  try {
    await agent.start();
  } catch (error) {
    await platform.close();
    throw error;
  }
  log.info({ version: AGENT_VERSION, platform: platform.kind, bootId: platform.system.bootId() }, 'agent started');
  const exit = await agent.done;
  await platform.close();
  log.info({ reason: exit.reason }, 'agent stopped');
  log.flush?.();
  if (exit.reason === 'reboot') return REBOOT_EXIT_CODE;
  return exit.reason === 'stopped' ? 0 : 1;
}

async function provisionCommand(argv: Record<string, unknown>): Promise<number> {
  const config = await resolve(argv);
  const packet = await readFile(argv.profile as string);
  const anchorPath = argv['trust-anchor'] as string | undefined;
  const trustAnchorPem = anchorPath ? await readFile(anchorPath, 'utf8') : undefined;
  const storage = prefixedStorage(new FileBlobStore(config.dataDir), 'agent/');
  const result = await provision(packet, {
    storage,
    now: new Date(),
    allowInsecure: config.allowInsecureTransport,
    ...(trustAnchorPem ? { trustAnchorPem } : {}),
  });
  process.stdout.write(
    `${JSON.stringify({ provisioned: true, deviceId: result.profile.deviceId, serverUrl: result.profile.serverUrl, trust: result.trust, dataDir: join(config.dataDir) })}\n`,
  );
  if (result.trust === 'trust-on-first-use') {
    process.stderr.write('warning: trusted the packet signature on first use (pass --trust-anchor to pin the server CA)\n');
  }
  return 0;
}

function configTableMarkdown(): string {
  const rows = CONFIG_TABLE.map((s) => {
    const def = s.default === null ? '—' : s.default === undefined ? '(required)' : `\`${String(s.default)}\``;
    return `| \`--${flagName(s.name)}\` / \`${envName(s.name)}\` | ${s.type} | ${def} | ${s.unit} | ${s.description} |`;
  });
  return ['| Flag / environment | Type | Default | Unit | Description |', '| --- | --- | --- | --- | --- |', ...rows].join('\n');
}

export async function main(args: string[]): Promise<number> {
  let code = 0;
  const set = (p: Promise<number>) =>
    p.then(
      (c) => {
        code = c;
      },
      (error: unknown) => {
        const e = error as AgentError;
        process.stderr.write(`fleet-agent: ${e.code ? `${e.code}: ` : ''}${e.message}\n`);
        code = exitCodeOf(e);
      },
    );
  await yargs(args)
    .scriptName('fleet-agent')
    .command(
      'run',
      'Run the agent (supervised: restarted after an emulated reboot)',
      (y) =>
        configOptions(y)
          .option('supervise', { type: 'boolean', describe: 'Run the agent in a child process and restart it after a reboot (exit 75)' })
          .option('fault', { type: 'string', array: true, describe: 'Fault injection key=value (tests, simulator)' }),
      (argv) => set(run(argv as Record<string, unknown>)),
    )
    .command(
      'provision <profile>',
      'Apply a connection-profile packet (FILETYPE=ConnectionProfile)',
      (y) =>
        configOptions(y)
          .positional('profile', { type: 'string', describe: 'Connection-profile packet (.tar)' })
          .option('trust-anchor', { type: 'string', describe: 'PEM CA the packet signature must chain to (default: trust on first use)' }),
      (argv) => set(provisionCommand(argv as Record<string, unknown>)),
    )
    .command(
      'status',
      'Print the local state (profile without credential, firmware slots, active job, unsent results)',
      (y) => configOptions(y),
      (argv) =>
        set(
          (async () => {
            const config = await resolve(argv as Record<string, unknown>);
            process.stdout.write(`${JSON.stringify(await readLocalStatus(config.dataDir), null, 2)}\n`);
            return 0;
          })(),
        ),
    )
    .command(
      'version',
      'Print the agent and protocol versions',
      (y) => y,
      () => set(Promise.resolve(process.stdout.write(`fleet-agent ${AGENT_VERSION} (protocol ${PROTOCOL_VERSION})\n`) ? 0 : 0)),
    )
    .command(
      'config',
      'Print the configuration table (Markdown)',
      (y) => y,
      () => set(Promise.resolve(process.stdout.write(`${configTableMarkdown()}\n`) ? 0 : 0)),
    )
    .demandCommand(1)
    .strictCommands()
    .fail((message, error) => {
      if (error) throw error;
      process.stderr.write(`fleet-agent: ${message}\n`);
      code = 2;
    })
    .help()
    .parseAsync();
  return code;
}

export { configTableMarkdown };
