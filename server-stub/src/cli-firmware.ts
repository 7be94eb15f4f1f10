import { readFileSync } from 'node:fs';
import type { Argv } from 'yargs';
import { loadConfig } from './config.js';
import { addVendorAnchors, listAnchors, retireAnchor, rotateSigningPki } from './pki/signing.js';
import { createServices } from './services.js';

const pemBlocksOf = (pem: string) => pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];

/**
 * `fleet-server firmware import DIR`: imports the vendor's signed firmware packets (`DIR/*.tar`)
 * into the catalogue every account can use; roots given with `--trust-anchor` that verified a
 * packet are stored as vendor roots. `fleet-server firmware add-anchor PEM` stores vendor roots.
 * `fleet-server signing list|rotate|retire` manages the server's signing roots.
 *
 * These change files in `DATA/signing/`; a running server re-reads them every
 * `trustAnchorReloadSec` and sends the new set to its routers.
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
              .option('trust-anchor', {
                type: 'string',
                describe: 'PEM file of the vendor\'s root(s), in addition to DATA/signing/vendor-anchors.pem; stored when it verifies a packet',
              }),
          async (args) => {
            const services = createServices(loadConfig({ flags: { dataDir: args.data, logLevel: 'silent' }, env: {} }));
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
              .option('data', { type: 'string', demandOption: true, describe: 'Data directory' }),
          async (args) => {
            const pem = readFileSync(args.pem, 'utf8');
            if (pemBlocksOf(pem).length === 0) throw new Error(`${args.pem} holds no PEM certificate`);
            const added = addVendorAnchors(args.data, pem);
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
          (a) => a.option('data', { type: 'string', demandOption: true, describe: 'Data directory' }),
          async (args) => out(JSON.stringify({ anchors: await listAnchors(args.data) })),
        )
        .command(
          'rotate',
          'New signing root and signer; the old root stays trusted (overlap) until it is retired',
          (a) => a.option('data', { type: 'string', demandOption: true, describe: 'Data directory' }),
          async (args) => {
            await rotateSigningPki(args.data);
            out(JSON.stringify({ anchors: await listAnchors(args.data) }));
          },
        )
        .command(
          'retire <fingerprint>',
          'Stop trusting a rotated-out server root or a vendor root (SHA-256 fingerprint from `signing list`)',
          (a) =>
            a
              .positional('fingerprint', { type: 'string', demandOption: true, describe: 'SHA-256 fingerprint (hex)' })
              .option('data', { type: 'string', demandOption: true, describe: 'Data directory' }),
          async (args) => {
            await retireAnchor(args.data, args.fingerprint);
            out(JSON.stringify({ anchors: await listAnchors(args.data) }));
          },
        ),
    );
}
