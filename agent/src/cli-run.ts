import { spawn } from 'node:child_process';
import { createAgent } from './agent.js';
import { type AgentConfig, CONFIG_TABLE, type ConfigInput, flagName, loadConfig, readAgentConfigFile, type OptionSpec } from './config.js';
import { lockDataDir } from './data-dir-lock.js';
import type { AgentError } from './errors.js';
import { exitCodeOf, NO_RESTART_EXIT_CODES } from './exit-codes.js';
import { profileFromConfig } from './local-status.js';
import { createLogger } from './logger.js';
import { createEmulatedPlatform, REBOOT_EXIT_CODE } from './platform/emulated.js';
import { type Faults, parseFaults } from './platform/faults.js';
import { createMemoryPlatform } from './platform/memory.js';
import { AGENT_VERSION } from './version.js';

/*
 * `fleet-agent run` without a command-line library: an idle agent is the process that runs for
 * months on a router, so it loads only what it needs (yargs is for the other commands and for
 * help; cli-main.ts). The same flags as yargs parses them (cli-main's `configOptions`), in the
 * forms the documentation and the systemd unit use; anything else goes to yargs, which also
 * gives the help and usage errors.
 */

/** Prints an error as the CLI does (`fleet-agent: CODE: message`) and returns its exit code. */
export function reportError(error: unknown): number {
  const e = error as AgentError;
  process.stderr.write(`fleet-agent: ${e.code ? `${e.code}: ` : ''}${e.message}\n`);
  return exitCodeOf(e);
}

/**
 * The arguments of `run` as yargs would give them to the command (`argv[spec.name]`, `config`,
 * `supervise`, `fault`), or undefined when they are not plain `--flag value`, `--flag=value`,
 * `--flag` / `--no-flag` (booleans) and repeated `--fault` forms of known options: yargs decides those.
 */
export function parseRunArgs(args: readonly string[]): Record<string, unknown> | undefined {
  if (args[0] !== 'run') return undefined;
  const specs = new Map<string, OptionSpec | 'config' | 'supervise' | 'fault'>([
    ['config', 'config'],
    ['supervise', 'supervise'],
    ['fault', 'fault'],
  ]);
  for (const spec of CONFIG_TABLE) {
    specs.set(flagName(spec.name), spec);
    if (spec.name === 'dataDir') specs.set('data', spec);
  }
  const out: Record<string, unknown> = {};
  const seen = new Set<string>();
  for (let i = 1; i < args.length; i++) {
    const arg = args[i]!;
    const match = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/s.exec(arg);
    if (!match) return undefined;
    let flag = match[1]!;
    const inline = match[2];
    let negated = false;
    if (!specs.has(flag) && flag.startsWith('no-') && inline === undefined) {
      flag = flag.slice(3);
      negated = true;
    }
    const spec = specs.get(flag);
    if (!spec) return undefined;
    const isBoolean = spec === 'supervise' || (typeof spec === 'object' && spec.type === 'boolean');
    if (negated && !isBoolean) return undefined;
    const key = typeof spec === 'object' ? spec.name : spec;
    if (seen.has(key) && key !== 'fault') return undefined;
    seen.add(key);
    if (isBoolean) {
      if (inline !== undefined && inline !== 'true' && inline !== 'false') return undefined;
      const next = args[i + 1];
      if (inline === undefined && (next === 'true' || next === 'false')) return undefined;
      out[key] = negated ? false : inline !== 'false';
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = args[i + 1];
      if (next === undefined || next.startsWith('-')) return undefined;
      value = next;
      i++;
    }
    if (key === 'fault') out.fault = [...((out.fault as string[] | undefined) ?? []), value];
    else if (typeof spec === 'object' && spec.type === 'integer') {
      if (value.trim() === '' || !Number.isFinite(Number(value))) return undefined;
      out[key] = Number(value);
    } else out[key] = value;
  }
  return out;
}

export async function resolve(argv: Record<string, unknown>): Promise<AgentConfig> {
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
  const args = [...process.execArgv, process.argv[1]!, ...process.argv.slice(2), '--no-supervise'];
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

export async function run(argv: Record<string, unknown>): Promise<number> {
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
