import { type Static, Type } from '@sinclair/typebox';
import { Count, Percent, Sha256Hex, Text, VersionString } from './common.js';

export const CertificateSummary = Type.Object(
  {
    fingerprintSha256: Sha256Hex('SHA-256 fingerprint of the DER certificate.'),
    subject: Text('Subject distinguished name.', 512),
    notAfter: Type.String({
      maxLength: 40,
      pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?(Z|[+-]\\d{2}:\\d{2})$',
      description: 'End of validity (ISO 8601 date-time).',
    }),
    isCa: Type.Optional(Type.Boolean({ description: 'True for a CA certificate.' })),
  },
  { description: 'An installed certificate. Never a key.' },
);

export const ContainerSummary = Type.Object(
  {
    name: Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: '^[A-Za-z0-9._-]+$',
      description: 'Container name.',
    }),
    version: VersionString('Installed container version.'),
    state: Type.Union(
      [Type.Literal('running'), Type.Literal('stopped'), Type.Literal('failed'), Type.Literal('installing')],
      { description: 'Run state.' },
    ),
  },
  { description: 'An installed container.' },
);

export const StatusBody = Type.Object(
  {
    uptimeSec: Count('Seconds since boot.'),
    link: Type.Object(
      {
        type: Type.Union(
          [
            Type.Literal('ethernet'),
            Type.Literal('lte'),
            Type.Literal('5g'),
            Type.Literal('wifi'),
            Type.Literal('other'),
          ],
          { description: 'Uplink used for the control channel.' },
        ),
        up: Type.Boolean({ description: 'Whether the uplink is up.' }),
        signalQuality: Type.Optional(Percent('Signal quality of a radio uplink')),
        rssiDbm: Type.Optional(
          Type.Number({ minimum: -150, maximum: 0, description: 'Received signal strength (dBm).' }),
        ),
      },
      { description: 'Uplink and its quality.' },
    ),
    firmwareVersion: VersionString('Firmware version running now.'),
    configurationVersion: Type.Optional(VersionString('Version of the active configuration profile.')),
    certificates: Type.Array(CertificateSummary, {
      maxItems: 256,
      description: 'Installed certificates and CAs.',
    }),
    containers: Type.Array(ContainerSummary, { maxItems: 64, description: 'Installed containers.' }),
    trustAnchorsDigest: Type.Optional(
      Sha256Hex('`trustAnchorsDigest` of the packet-signing anchors the device trusts now (since 1.1).'),
    ),
    location: Type.Optional(
      Type.Object(
        {
          lat: Type.Number({ minimum: -90, maximum: 90, description: 'Latitude (degrees, WGS 84).' }),
          lon: Type.Number({ minimum: -180, maximum: 180, description: 'Longitude (degrees, WGS 84).' }),
          accuracyM: Type.Optional(Type.Number({ minimum: 0, description: 'Accuracy radius (metres).' })),
        },
        { description: 'Position from GNSS, when the router has one. Management data, never analytics.' },
      ),
    ),
  },
  { description: 'Device state; sent on connect, on change and periodically.' },
);
export type StatusBody = Static<typeof StatusBody>;
