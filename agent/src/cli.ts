#!/usr/bin/env node
import { hideBin } from 'yargs/helpers';
import { main } from './cli-main.js';

// The `fleet-agent` executable (bin of @router-fleet/agent and entry of the esbuild bundle).
main(hideBin(process.argv)).then(
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
