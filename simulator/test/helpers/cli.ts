import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureBuilt } from '../../../server-stub/test/helpers/built.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** The simulator's compiled CLI: what `fleet-sim` runs. */
export const SIM_CLI = join(ROOT, 'simulator', 'dist', 'cli.js');

/** Builds simulator/dist (and what it imports) when it is missing or older than simulator/src. */
export function ensureSimulatorBuilt(): void {
  ensureBuilt('simulator', SIM_CLI);
}

export interface SimRun {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** The exit code (null when a signal ended the process). */
  exit: Promise<number | null>;
}

/** Starts `fleet-sim ARGS` as a real process. */
export function startSim(args: string[], env: Record<string, string> = {}): SimRun {
  const child = spawn(process.execPath, [SIM_CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => {
    out += b.toString();
  });
  child.stderr!.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const exit = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exit };
}

/** Runs `fleet-sim ARGS` to its end. */
export async function runSim(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const run = startSim(args, env);
  const code = await run.exit;
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}
