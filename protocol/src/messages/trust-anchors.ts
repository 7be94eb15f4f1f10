import { type Static, Type } from '@sinclair/typebox';
import { Sha256Hex } from './common.js';

/**
 * Who a trust anchor vouches for. `server`: the server's own packet-signing roots (connection
 * profiles, packets the server builds); `account`: roots the account set in its packet policy (its
 * own signers); `vendor`: roots of the firmware vendor (the Smart Update catalogue).
 */
export const TRUST_ANCHOR_SCOPES = ['server', 'account', 'vendor'] as const;
export type TrustAnchorScope = (typeof TRUST_ANCHOR_SCOPES)[number];

/** Largest anchor set a device keeps (every scope together). */
export const MAX_TRUST_ANCHORS = 16;

export const TrustAnchor = Type.Object(
  {
    scope: Type.Union(
      TRUST_ANCHOR_SCOPES.map((s) => Type.Literal(s)),
      { description: '`server`, `account` (the account’s packet policy) or `vendor` (firmware catalogue).' },
    ),
    certPem: Type.String({
      minLength: 1,
      maxLength: 16_384,
      pattern: '^\\s*-----BEGIN CERTIFICATE-----',
      description: 'One PEM CA certificate packets may chain to.',
    }),
  },
  { description: 'A root the device trusts to sign update packets.' },
);
export type TrustAnchor = Static<typeof TrustAnchor>;

export const TrustAnchorsBody = Type.Object(
  {
    anchors: Type.Array(TrustAnchor, {
      minItems: 1,
      maxItems: MAX_TRUST_ANCHORS,
      description:
        'The complete set the device must trust from now on (it replaces the previous set; during a key rotation it holds the old and the new root).',
    }),
    digest: Sha256Hex('`trustAnchorsDigest` of the certificates in `anchors`; the device reports it back in `hello` and `status`.'),
  },
  {
    description:
      'The packet-signing trust anchors changed (since 1.1). Accepted only on the welcomed TLS session, never from a packet; the device stores the set atomically before using it.',
  },
);
export type TrustAnchorsBody = Static<typeof TrustAnchorsBody>;
