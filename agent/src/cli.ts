#!/usr/bin/env node
import { parseRunArgs, reportError, run } from './cli-run.js';

// The `fleet-agent` executable (bin of @router-fleet/agent and entry of the esbuild bundle). `run`
// with plain flags starts without yargs; every other command (and help, usage errors) loads it.
const args = process.argv.slice(2);
const runArgs = parseRunArgs(args);
const command = runArgs ? run(runArgs).catch(reportError) : import('./cli-main.js').then((cli) => cli.main(args));
command.then(
  (code) => {
    process.exitCode = code;
    // Handles (sockets, timers) may linger after a stop; the process must still end.
    setTimeout(() => process.exit(code), 200).unref();
  },
  (error: unknown) => {
    process.stderr.write(`fleet-agent: ${(error as Error).message}\n`);
    process.exit(1);
  },
);
