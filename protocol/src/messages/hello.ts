import { type Static, Type } from '@sinclair/typebox';
import { Count, Identifier, SerialNumber, Sha256Hex, Text, VersionString } from './common.js';

/** Optional features the agent supports; the server only uses what is announced. */
export const CAPABILITIES = [
  'firmware',
  'firmware-incremental',
  'configuration-profile',
  'ascii-configuration',
  'certificate',
  'container',
  'connection-profile',
  'analytics',
  'resume-download',
] as const;

export const HelloBody = Type.Object(
  {
    serialNumber: SerialNumber('Serial number printed on the router; the key under which it was registered.'),
    deviceId: Identifier('Device UUID assigned by the server at registration (from the connection profile).'),
    credential: Type.String({
      minLength: 16,
      maxLength: 256,
      description: 'Device secret from the connection profile. Sent only inside TLS; never logged.',
    }),
    model: Type.String({ minLength: 1, maxLength: 64, description: 'Hardware model name, e.g. `MRX5 LTE`.' }),
    firmwareVersion: VersionString('Firmware version running now (the active slot).'),
    agentVersion: VersionString('Version of the router-fleet agent.'),
    capabilities: Type.Array(
      Type.String({ minLength: 1, maxLength: 32, description: 'Capability name (see CAPABILITIES).' }),
      {
        maxItems: 32,
        description: 'Features the agent supports; unknown names and duplicates are ignored by the server.',
      },
    ),
    bootId: Identifier(
      'Random id that changes on every boot; a new value tells the server the router restarted.',
    ),
    trustAnchorsDigest: Type.Optional(
      Sha256Hex('`trustAnchorsDigest` of the packet-signing anchors the device trusts now (since 1.1); the server sends `trust-anchors` when it differs.'),
    ),
    inventory: Type.Object(
      {
        activeSlot: Type.Optional(
          Type.Union([Type.Literal('a'), Type.Literal('b')], { description: 'Firmware slot booted now.' }),
        ),
        configurationVersion: Type.Optional(VersionString('Version of the active configuration profile.')),
        certificates: Count('Number of certificates and CAs installed.'),
        containers: Count('Number of containers installed.'),
        storageFreeBytes: Type.Optional(Count('Free bytes for staging update packets.')),
        hardwareRevision: Type.Optional(Text('Hardware revision as printed on the type plate.', 32)),
      },
      { description: 'Summary of what is installed; details follow in `status`.' },
    ),
  },
  { description: 'First message on every connection: who the router is and what it runs.' },
);
export type HelloBody = Static<typeof HelloBody>;
