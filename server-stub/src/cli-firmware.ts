import { readFileSync } from 'node:fs';
import type { Argv } from 'yargs';
import { loadConfig } from './config.js';
import { createServices } from './services.js';

/**
 * `fleet-server firmware import DIR`: imports the vendor's signed firmware packets (`DIR/*.tar`)
 * into the catalogue every account can use. Prints the report as JSON.
 */
export function firmwareCommand(y: Argv, out: (line: string) => void): Argv {
  return y.command('firmware', 'Vendor firmware catalogue', (z) =>
    z.demandCommand(1).command(
      'import <dir>',
      'Import signed vendor firmware packets (*.tar) from a directory',
      (a) =>
        a
          .positional('dir', { type: 'string', demandOption: true, describe: 'Directory with the packets' })
          .option('data', { type: 'string', demandOption: true, describe: 'Data directory' })
          .option('trust-anchor', { type: 'string', describe: 'PEM file of the vendor\'s root(s), in addition to DATA/signing/vendor-anchors.pem' }),
      async (args) => {
        const services = createServices(loadConfig({ flags: { dataDir: args.data, logLevel: 'silent' }, env: {} }));
        try {
          const pem = args['trust-anchor'] ? readFileSync(args['trust-anchor'], 'utf8') : '';
          const anchors = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
          const report = await services.packets.importVendorFirmware(args.dir, { trustAnchorsPem: anchors });
          out(JSON.stringify(report));
        } finally {
          services.close();
        }
      },
    ),
  );
}
