#!/usr/bin/env node
// The `fleet-loadtest` command. This launcher is committed, not built, so that npm links the command when
// it installs the package, before dist/ exists (a fresh clone builds in the root `prepare` script).
let cli;
try {
  cli = await import('../dist/cli.js');
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !String(err.message).includes('dist/cli.js')) throw err;
  process.stderr.write('fleet-loadtest: dist/cli.js is missing: build the packages first (npm run build in the repository)\n');
  process.exit(1);
}
await cli.cliMain(process.argv.slice(2));
