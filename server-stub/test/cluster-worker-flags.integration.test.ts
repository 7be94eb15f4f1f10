import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { workerExecArgv } from '../src/cluster/worker-flags.js';
import { ensureServerBuilt } from './helpers/built.js';
import { killServes, seedFleet, serve, workersListening } from './helpers/cluster.js';
import { removeTempDirs } from './helpers/setup.js';

beforeAll(() => ensureServerBuilt(), 180_000);
afterAll(() => {
  killServes();
  removeTempDirs();
});

describe('the old-generation size of cluster workers', () => {
  it('adds the configured initial size to the primary\'s own flags', () => {
    expect(workerExecArgv(['--enable-source-maps'], undefined, 512)).toEqual(['--enable-source-maps', '--initial-old-space-size=512']);
    expect(workerExecArgv([], '', 256)).toEqual(['--initial-old-space-size=256']);
  });

  it('adds nothing when the size is 0 or the primary was given an initial size of its own', () => {
    expect(workerExecArgv(['--trace-gc'], undefined, 0)).toEqual(['--trace-gc']);
    expect(workerExecArgv(['--initial-old-space-size=64'], undefined, 512)).toEqual(['--initial-old-space-size=64']);
    expect(workerExecArgv(['--initial_old_space_size=64'], undefined, 512)).toEqual(['--initial_old_space_size=64']);
    expect(workerExecArgv(['--initial-old-space-size', '64'], undefined, 512)).toEqual(['--initial-old-space-size', '64']);
  });

  it('keeps the initial size within a smaller maximum (the last of repeated flags wins)', () => {
    expect(workerExecArgv(['--max-old-space-size=300'], undefined, 512)).toEqual(['--max-old-space-size=300', '--initial-old-space-size=300']);
    expect(workerExecArgv(['--max-old-space-size=300'], '--max-old-space-size=4096', 512)).toEqual([
      '--max-old-space-size=300',
      '--initial-old-space-size=300',
    ]);
    expect(workerExecArgv([], '--max-old-space-size=4096', 512)).toEqual(['--initial-old-space-size=512']);
    expect(workerExecArgv([], '--max-old-space-size=200', 512)).toEqual(['--initial-old-space-size=200']);
  });

  // Read from the workers' own command lines (/proc): what node:cluster actually started them with.
  const workerCommandLines = async (args: string[]) => {
    const { dataDir } = await seedFleet({ licences: 0, devices: 0 });
    const server = serve(dataDir, ['--workers', '2', ...args]);
    try {
      const pids = await workersListening(server.logs, 2);
      expect(pids).not.toContain(server.child.pid);
      return pids.map((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0'));
    } finally {
      await server.stop();
    }
  };

  it.runIf(process.platform === 'linux')('starts each worker of `serve --workers 2` with the initial size, by default and as configured', async () => {
    for (const cmdline of await workerCommandLines([])) expect(cmdline).toContain('--initial-old-space-size=512');
    for (const cmdline of await workerCommandLines(['--workerOldSpaceMb', '0'])) {
      expect(cmdline.some((a) => a.includes('old-space-size'))).toBe(false);
      // The command line was read: it is the worker's own.
      expect(cmdline.some((a) => a.endsWith('cli.js'))).toBe(true);
    }
  }, 120_000);
});
