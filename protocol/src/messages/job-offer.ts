import { type Static, Type } from '@sinclair/typebox';
import { EpochMs, Identifier, Sha256Hex, Text } from './common.js';

export const JobOfferBody = Type.Object(
  {
    executionId: Identifier('Execution id (one job on one device); offers are idempotent by it.'),
    jobId: Identifier('Job id.'),
    packet: Type.Object(
      {
        url: Type.String({
          minLength: 1,
          maxLength: 2048,
          description: 'HTTPS URL of the packet; supports `Range`.',
        }),
        size: Type.Integer({
          minimum: 1,
          maximum: Number.MAX_SAFE_INTEGER,
          description: 'Packet size (bytes).',
        }),
        sha256: Sha256Hex('SHA-256 of the whole packet file.'),
        description: Type.Optional(Text('What the packet contains.')),
      },
      { description: 'The update packet to fetch.' },
    ),
    download: Type.Object(
      {
        token: Type.String({
          minLength: 16,
          maxLength: 1024,
          description:
            'Short-lived bearer credential for the download, valid for this device and execution only.',
        }),
        expiresAt: EpochMs('End of the credential’s validity'),
      },
      { description: 'Download credential.' },
    ),
    deadline: EpochMs('The execution times out if it is not terminal by then'),
    installWindow: Type.Optional(
      Type.Object(
        {
          notBefore: EpochMs('Install not before'),
          notAfter: EpochMs('Install not after'),
        },
        { description: 'Maintenance window: download at once, install only inside it.' },
      ),
    ),
    allowDowngrade: Type.Boolean({ description: 'Whether installing an older firmware version is allowed.' }),
  },
  { description: 'Asks the device to download, verify and install a packet.' },
);
export type JobOfferBody = Static<typeof JobOfferBody>;
