#!/usr/bin/env node
import { Buffer } from 'node:buffer';
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { firmwareCommand } from './cli-firmware.js';
import { configTable, type ConfigInput, loadConfig } from './config.js';
import { AppError, isAppError } from './errors.js';
import { LICENCE_KINDS, type LicenceKind } from './licensing/plans.js';
import { createServices } from './services.js';

/**
 * `fleet-server`: serve, issue licence codes (vendor side, into the data directory's code table),
 * create accounts. Options of `serve` are the configuration table (config.ts); flags win over
 * `FLEET_SERVER_*` environment variables, which win over `--config FILE`, which wins over defaults.
 */
function offlineConfig(dataDir: string, store?: string) {
  return loadConfig({ flags: { dataDir, logLevel: 'silent', ...(store === undefined ? {} : { store }) }, env: {} });
}

/** The offline commands work on the store `serve` would use: the data directory's SQLite file, or `--store`. */
const storeOption = {
  type: 'string',
  describe: 'The store `serve --store` uses (postgres://user@host:port/database); default the SQLite file in the data directory',
} as const;

export async function runCli(argv: string[], out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)) {
  const serveOptions = Object.fromEntries(
    configTable.map((s) => [
      s.name,
      {
        type: s.type === 'integer' ? ('number' as const) : s.type === 'boolean' ? ('boolean' as const) : ('string' as const),
        describe: `${s.description} [${s.unit}]`,
      },
    ]),
  );
  await firmwareCommand(yargs(argv), out)
    .scriptName('fleet-server')
    .strict()
    .demandCommand(1)
    .command(
      'serve',
      'Run the server',
      (y) =>
        y
          .options(serveOptions)
          .option('data', { type: 'string', describe: 'Alias of --dataDir' })
          .option('config', { type: 'string', describe: 'JSON file with configuration options' }),
      async (args) => {
        const flags: ConfigInput = {};
        for (const s of configTable) {
          const v = (args as Record<string, unknown>)[s.name];
          if (v !== undefined) flags[s.name] = v;
        }
        if (args.data !== undefined && flags.dataDir === undefined) flags.dataDir = args.data;
        const config = loadConfig({ flags, env: process.env, file: args.config ?? null });
        // Loaded here so the offline commands do not pay for the HTTP stack.
        if (config.workers > 1) {
          const cluster = (await import('node:cluster')).default;
          if (cluster.isPrimary) await (await import('./cluster/primary.js')).runPrimary(config);
          else await (await import('./cluster/worker.js')).runWorker(config);
          return;
        }
        const { main } = await import('./main.js');
        await main(config);
      },
    )
    .command('tls', 'Local TLS certificates (demos and tests)', (y) =>
      y.demandCommand(1).command(
        'generate',
        'Make a CA and a server certificate in DATA/tls/ (serve with --tls-cert DATA/tls/server.pem --tls-key DATA/tls/server.key)',
        (z) =>
          z
            .option('data', { type: 'string', demandOption: true, describe: 'Data directory' })
            .option('host', { type: 'string', array: true, default: ['localhost'], describe: 'DNS names of the server' })
            .option('ip', { type: 'string', array: true, default: ['127.0.0.1', '::1'], describe: 'IP addresses of the server' }),
        async (args) => {
          const { generateLocalTls } = await import('./pki/local-tls.js');
          const files = await generateLocalTls(args.data, { hosts: args.host, ips: args.ip });
          out(JSON.stringify({ ca: files.caCert, cert: files.cert, key: files.key }));
        },
      ),
    )
    .command('licences', 'Vendor tools for licence codes', (y) =>
      y.demandCommand(1).command(
        'issue',
        'Issue new activation codes into the data directory (prints one code per line)',
        (z) =>
          z
            .option('data', { type: 'string', demandOption: true, describe: 'Data directory' })
            .option('plan', { choices: LICENCE_KINDS, demandOption: true, describe: 'Article' })
            .option('count', { type: 'number', default: 1, describe: 'How many codes' })
            .option('csv', { type: 'boolean', default: false, describe: 'Print the bulk-import CSV file instead' })
            .option('store', storeOption),
        (args) => {
          if (!Number.isSafeInteger(args.count) || args.count < 1 || args.count > 100_000) {
            throw new Error('--count must be an integer from 1 to 100000');
          }
          const services = createServices(offlineConfig(args.data, args.store));
          try {
            const now = services.clock.now();
            const codes = services.licensing.issue(args.plan as LicenceKind, args.count, now);
            if (args.csv) {
              out('code,plan,issuedAt');
              for (const c of codes) out(`${c},${args.plan},${new Date(now).toISOString()}`);
            } else {
              for (const c of codes) out(c);
            }
          } finally {
            services.close();
          }
        },
      ).command(
        'activate [codes..]',
        'Redeem activation codes into an account and activate them in one step (all or none); without codes, activate every Available licence of the account',
        (z) =>
          z
            .positional('codes', { type: 'string', array: true, describe: 'Activation codes' })
            .option('data', { type: 'string', demandOption: true, describe: 'Data directory' })
            .option('user', { type: 'string', demandOption: true, describe: 'A user of the account (e.g. its admin)' })
            .option('codes-file', { type: 'string', describe: 'File with one code per line (`-` = standard input), as `licences issue` prints them' })
            .option('at', { type: 'string', describe: 'Activation date (ISO 8601); default now' })
            .option('store', storeOption),
        async (args) => {
          const codes = [...(args.codes ?? [])];
          if (args.codesFile !== undefined) {
            const text = args.codesFile === '-' ? await readStdin() : readFileSync(args.codesFile, 'utf8');
            codes.push(...text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('code,')).map((l) => l.split(',')[0]!));
          }
          const at = args.at === undefined ? undefined : Date.parse(args.at);
          if (at !== undefined && Number.isNaN(at)) throw new AppError('SERVER_VALIDATION', '--at must be an ISO 8601 date');
          const services = createServices(offlineConfig(args.data, args.store));
          try {
            const licences = services.licensing.redeemAndActivate(services.licensing.scopeOfUser(args.user), codes, at);
            out(JSON.stringify({
              activated: licences.length,
              licences: licences.map((l) => ({
                code: l.code,
                kind: l.kind,
                status: l.status,
                activationAt: l.activationAt === null ? null : new Date(l.activationAt).toISOString(),
                expiresAt: l.expiresAt === null ? null : new Date(l.expiresAt).toISOString(),
              })),
            }));
          } finally {
            services.close();
          }
        },
      ),
    )
    .command('account', 'Accounts', (y) =>
      y.demandCommand(1).command(
        'create',
        'Create an account with its first (admin) user',
        (z) =>
          z
            .option('data', { type: 'string', demandOption: true, describe: 'Data directory' })
            .option('name', { type: 'string', demandOption: true, describe: 'Company name' })
            .option('user', { type: 'string', demandOption: true, describe: 'User name of the admin' })
            .option('password', { type: 'string', demandOption: true, describe: 'Password of the admin' })
            .option('store', storeOption),
        async (args) => {
          const services = createServices(offlineConfig(args.data, args.store));
          try {
            const created = await services.auth.createAccount({
              name: args.name,
              username: args.user,
              password: args.password,
            });
            out(JSON.stringify({ account: created.accountUuid, user: created.userUuid }));
          } finally {
            services.close();
          }
        },
      ),
    )
    .fail((msg, err) => {
      throw err ?? new Error(msg);
    })
    .parseAsync();
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function isEntryPoint(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

/** Runs the command line and exits with status 1 on an error (the `fleet-server` executable). */
export function cliMain(argv: string[] = hideBin(process.argv)): Promise<void> {
  return runCli(argv).catch((err: unknown) => {
    const message = isAppError(err) ? `${err.code}: ${err.message}` : (err as Error).message;
    process.stderr.write(`fleet-server: ${message}\n`);
    process.exit(1);
  });
}

if (isEntryPoint()) void cliMain();
