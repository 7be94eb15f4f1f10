import { type Static, Type } from '@sinclair/typebox';
import { Code, EpochMs, Identifier, Text } from './common.js';

/**
 * Session parameters, named after the real product's `connectionPingInterval`,
 * `connectionPongTimeout` and `connectionSessionTimeout` (all in seconds here).
 */
export const SessionParameters = Type.Object(
  {
    pingIntervalSec: Type.Integer({
      minimum: 5,
      maximum: 3600,
      description: 'Seconds between pings; each side pings when it has heard nothing for this long.',
    }),
    pongTimeoutSec: Type.Integer({
      minimum: 1,
      maximum: 3600,
      description: 'Seconds to wait for the pong before the link is declared dead (half-open detection).',
    }),
    sessionTimeoutSec: Type.Integer({
      minimum: 1,
      maximum: 3600,
      description: 'Seconds the server keeps the session (and the licence lease) after the link drops.',
    }),
  },
  { description: 'Keep-alive parameters; the device uses the server’s values.' },
);
export type SessionParameters = Static<typeof SessionParameters>;

export const ADMISSIONS = ['managed', 'unmanaged', 'rejected'] as const;
export type Admission = (typeof ADMISSIONS)[number];

export const AdmissionSchema = Type.Union(
  ADMISSIONS.map((a) => Type.Literal(a)),
  {
    description:
      '`managed`: holds a licence, gets jobs. `unmanaged`: visible, no licence, no jobs. `rejected`: no licence free; the server closes the channel, retry after `retryAfterSec`.',
  },
);

export const WelcomeBody = Type.Object(
  {
    admission: AdmissionSchema,
    reason: Type.Optional(
      Code('Why the device is unmanaged or rejected, e.g. `LICENCE_UNAVAILABLE`, `LICENCE_EXPIRED`.'),
    ),
    reasonMessage: Type.Optional(Text('Human-readable reason.')),
    retryAfterSec: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 86_400,
        description: 'When rejected: seconds before the next attempt.',
      }),
    ),
    deviceId: Identifier('Device UUID on the server.'),
    session: SessionParameters,
    analyticsConsent: Type.Boolean({ description: 'Whether the account consented to device analytics.' }),
    serverTime: EpochMs('Server clock when sending'),
  },
  { description: 'Answer to `hello`: the admission decision and the session parameters.' },
);
export type WelcomeBody = Static<typeof WelcomeBody>;
