import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/**
 * The server's compiled CLI. Tests that start several server processes run it instead of the
 * TypeScript sources: every process compiling the sources with tsx on start-up took longer than
 * the test's deadlines on a loaded 2-core machine.
 */
export const SERVER_CLI_DIST = join(ROOT, 'server-stub', 'dist', 'cli.js');

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/**
 * Builds a workspace's dist (and the workspaces it references) when `entry` is missing or older
 * than the workspace's src. Shared by the tests of every package that run a compiled CLI.
 */
export function ensureBuilt(workspace: string, entry: string): void {
  if (existsSync(entry) && statSync(entry).mtimeMs >= newest(join(ROOT, workspace, 'src'))) return;
  execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-b', workspace], { cwd: ROOT, stdio: 'inherit' });
}

/** Builds server-stub/dist (and protocol) when it is missing or older than server-stub/src. */
export function ensureServerBuilt(): void {
  ensureBuilt('server-stub', SERVER_CLI_DIST);
}
