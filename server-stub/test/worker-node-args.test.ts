import { describe, expect, it } from 'vitest';
import { WORKER_V8_FLAGS, workerExecArgv } from '../src/cluster/worker-node-args.js';

describe('workerExecArgv', () => {
  it('gives the workers the heap flags before the primary\'s own node arguments', () => {
    expect(workerExecArgv(['--enable-source-maps'], undefined)).toEqual([...WORKER_V8_FLAGS, '--enable-source-maps']);
    expect(workerExecArgv([], '')).toEqual([...WORKER_V8_FLAGS]);
  });

  it('leaves out a flag the operator named on the primary\'s command line, in either spelling', () => {
    expect(workerExecArgv(['--initial-old-space-size=64'], undefined)).toEqual(['--initial-old-space-size=64']);
    expect(workerExecArgv(['--initial_old_space_size=64', '--cpu-prof'], undefined)).toEqual(['--initial_old_space_size=64', '--cpu-prof']);
  });

  it('leaves out a flag named in NODE_OPTIONS', () => {
    expect(workerExecArgv(['--cpu-prof'], ' --max-old-space-size=900  --initial-old-space-size=128 ')).toEqual(['--cpu-prof']);
  });

  it('keeps every default the operator did not name', () => {
    expect(workerExecArgv(['--b=1'], undefined, ['--a=1', '--b=2', '--c'])).toEqual(['--a=1', '--c', '--b=1']);
  });
});
