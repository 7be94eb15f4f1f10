import { readFileSync } from 'node:fs';
import type { Argv } from 'yargs';
import { loadConfig } from './config.js';
import { adoptSharedFiles, changeSigningFiles } from './hosts/shared-files.js';
import { addVendorAnchors, listAnchors, retireAnchor, rotateSigningPki } from './pki/signing.js';
import { createServices } from './services.js';
import { isPostgresUrl, Store } from './store/database.js';

const STORE_OPTION = {
  type: 'string',
  describe: 'The cluster\'s PostgreSQL store (postgres://…): work on the signing files every host shares, not only this data directory\'s',
} as const;

/**
 * Runs a change of `DATA/signing/`; with `store` (a PostgreSQL URL, several hosts on it) on the
 * cluster's files: the data directory takes the store's first, and the result becomes the store's
 * (`publish: false` for a command that only reads them).
 */
async function onSigningFiles<T>(dataDir: string, store: string | undefined, change: () => Promise<T> | T, publish = true): Promise<T> {
  if (store === undefined) return change();
  if (!isPostgresUrl(store)) throw new Error('--store must be a postgres:// URL (the SQLite store is the data directory\'s own)');
  const db = Store.select(store, dataDir);
  try {
    if (publish) return await changeSigningFiles(db, dataDir, change);
    adoptSharedFiles(db, dataDir, 'signing/');
    return await change();
  } finally {
    db.close();
  }
}

const pemBlocksOf = (pem: string) => pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];

/**
 * `fleet-server firmware import DIR`: imports the vendor's signed firmware packets (`DIR/*.tar`)
 * into the catalogue every account can use; roots given with `--trust-anchor` that verified a
 * packet are stored as vendor roots. `fleet-server firmware add-anchor PEM` stores vendor roots.
 * `fleet-server signing list|rotate|retire` manages the server's signing roots.
 *
 * These change files in `DATA/signing/`; a running server re-reads them every
 * `trustAnchorReloadSec` and sends the new set to its routers. With `--store postgres://…` (hosts
 * sharing a store) they change the cluster's copy, which every host takes at its next reload.
 */
export function firmwareCommand(y: Argv, out: (line: string) => void): Argv {
  return y
    .command('firmware', 'Vendor firmware catalogue', (z) =>
      z
        .demandCommand(1)
        .command(
          'import <dir>',
          'Import signed vendor firmware packets (*.tar) from a directory',
          (a) =>
            a
              .positional('dir', { type: 'string', demandOption: true, describe: 'Directory with the packets' })
              .option('data', { type: 'string', demandOption: true, describe: 'Data directory' })
              .option('store', STORE_OPTION)
              .option('trust-anchor', {
                type: 'string',
                describe: 'PEM file of the vendor\'s root(s), in addition to DATA/signing/vendor-anchors.pem; stored when it verifies a packet',
              }),
          async (args) => {
            const flags = { dataDir: args.data, logLevel: 'silent', ...(args.store === undefined ? {} : { store: args.store }) };
            // On a cluster the packets and vendor roots go into the store (PacketService publishes them).
            if (args.store !== undefined) await onSigningFiles(args.data, args.store, () => undefined, false);
            const services = createServices(loadConfig({ flags, env: {} }));
            try {
              const anchors = args['trust-anchor'] ? pemBlocksOf(readFileSync(args['trust-anchor'], 'utf8')) : [];
              const report = await services.packets.importVendorFirmware(args.dir, { trustAnchorsPem: anchors });
              out(JSON.stringify(report));
            } finally {
              services.close();
            }
          },
        )
        .command(
          'add-anchor <pem>',
          'Trust the vendor root(s) in a PEM file for the firmware catalogue (routers receive them)',
          (a) =>
            a
              .positional('pem', { type: 'string', demandOption: true, describe: 'PEM file with CA certificate(s)' })
              .option('data', { type: 'string', demandOption: true, describe: 'Data directory' })
              .option('store', STORE_OPTION),
          async (args) => {
            const pem = readFileSync(args.pem, 'utf8');
            if (pemBlocksOf(pem).length === 0) throw new Error(`${args.pem} holds no PEM certificate`);
            const added = await onSigningFiles(args.data, args.store, () => addVendorAnchors(args.data, pem));
            out(JSON.stringify({ added, anchors: await listAnchors(args.data) }));
          },
        ),
    )
    .command('signing', 'The server\'s packet-signing roots (what routers trust)', (z) =>
      z
        .demandCommand(1)
        .command(
          'list',
          'List trusted roots: the server\'s (current and rotated-out) and the vendor\'s',
          (a) => a.option('data', { type: 'string', demandOption: true, describe: 'Data directory' }).option('store', STORE_OPTION),
          // Reads the cluster's files: a listing never makes this data directory's the cluster's.
          async (args) => out(JSON.stringify({ anchors: await onSigningFiles(args.data, args.store, () => listAnchors(args.data), false) })),
        )
        .command(
          'rotate',
          'New signing root and signer; the old root stays trusted (overlap) until it is retired',
          (a) => a.option('data', { type: 'string', demandOption: true, describe: 'Data directory' }).option('store', STORE_OPTION),
          async (args) => {
            await onSigningFiles(args.data, args.store, () => rotateSigningPki(args.data));
            out(JSON.stringify({ anchors: await listAnchors(args.data) }));
          },
        )
        .command(
          'retire <fingerprint>',
          'Stop trusting a rotated-out server root or a vendor root (SHA-256 fingerprint from `signing list`)',
          (a) =>
            a
              .positional('fingerprint', { type: 'string', demandOption: true, describe: 'SHA-256 fingerprint (hex)' })
              .option('data', { type: 'string', demandOption: true, describe: 'Data directory' })
              .option('store', STORE_OPTION),
          async (args) => {
            await onSigningFiles(args.data, args.store, () => retireAnchor(args.data, args.fingerprint));
            out(JSON.stringify({ anchors: await listAnchors(args.data) }));
          },
        ),
    );
}
