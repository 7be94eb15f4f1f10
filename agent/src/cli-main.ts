import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PROTOCOL_VERSION } from '@router-fleet/protocol';
import yargs, { type Argv } from 'yargs';
import { reportError, resolve, run } from './cli-run.js';
import { CONFIG_TABLE, envName, flagName } from './config.js';
import { readLocalStatus } from './local-status.js';
import { FileBlobStore } from './platform/emulated.js';
import { prefixedStorage } from './platform/memory.js';
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
        code = reportError(error);
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
