import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const CLI = join(ROOT, 'agent', 'dist', 'cli.js');
export const REBOOT_EXIT = 75;

async function newest(dir: string): Promise<number> {
  let t = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? await newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Builds agent/dist when it is missing or older than agent/src (the process tests run the built CLI). */
export async function ensureBuilt(): Promise<void> {
  const src = await newest(join(ROOT, 'agent', 'src'));
  if (existsSync(CLI) && statSync(CLI).mtimeMs >= src) return;
  execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-b', 'agent'], { cwd: ROOT, stdio: 'inherit' });
}

export interface Run {
  child: ChildProcess;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr: () => string;
}

/** Builds the esbuild bundle into `outfile` (it starts about twice as fast as dist/: one file to load). */
export function buildBundle(outfile: string): string {
  execFileSync(process.execPath, [join(ROOT, 'agent', 'scripts', 'bundle.mjs'), '--outfile', outfile], { stdio: 'ignore' });
  return outfile;
}

/** Starts `fleet-agent run --no-supervise` on a data directory (`entry`: dist/cli.js or a bundle). */
export function runAgent(dataDir: string, args: string[] = [], env: Record<string, string> = {}, entry = CLI): Run {
  const child = spawn(process.execPath, [entry, 'run', '--no-supervise', '--data', dataDir, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d) => {
    err += d.toString();
    if (err.length > 200_000) err = err.slice(-100_000);
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, exit, stderr: () => err };
}

/**
 * Runs the agent like its supervisor would: restarts it after a reboot exit (75) and after a
 * SIGKILL (a power cut), with `args` for the first run and `laterArgs` for the restarts.
 * Resolves with the sequence of exits once `done()` says so.
 */
export class Supervisor {
  exits: { code: number | null; signal: NodeJS.Signals | null }[] = [];
  current: Run | undefined;
  #stopped = false;
  #loop: Promise<void> | undefined;
  readonly log: string[] = [];

  constructor(
    readonly dataDir: string,
    readonly args: string[],
    readonly laterArgs: string[],
    readonly entry: string = CLI,
  ) {}

  start(): void {
    this.#loop = (async () => {
      let args = this.args;
      for (;;) {
        const run = runAgent(this.dataDir, args, {}, this.entry);
        this.current = run;
        const exit = await run.exit;
        this.log.push(run.stderr());
        this.exits.push(exit);
        if (this.#stopped) return;
        // The first arguments (with the one-shot fault) stay until the power cut happened.
        if (exit.signal === 'SIGKILL') args = this.laterArgs;
        if (exit.code === REBOOT_EXIT || exit.signal === 'SIGKILL') continue;
        return;
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.current?.child.kill('SIGTERM');
    await this.#loop;
  }
}
