/** The per-device connection profile: shared by the server (which produces it) and the agent (which applies it). */
import { createHash, X509Certificate } from 'node:crypto';
import { isIdentifier, isSerialNumber } from './identifiers.js';
import { MAX_TRUST_ANCHORS, TRUST_ANCHOR_SCOPES, type TrustAnchor } from './messages/trust-anchors.js';
import type { MqttProtocolVersion } from './mqtt.js';

/** The `format` value of connection profiles this agent understands. */
export const CONNECTION_PROFILE_FORMAT = 'router-fleet.connection-profile/1';

/** Name of the packet section (FILETYPE=ConnectionProfile) that carries the profile, by convention. */
export const CONNECTION_PROFILE_FILENAME = 'connection-profile.json';

/**
 * The per-device connection profile: the JSON content of a `FILETYPE=ConnectionProfile` section
 * (UTF-8, one object). The server produces it at registration; `fleet-agent provision` applies it.
 * It holds the device credential: it is stored with mode 0600 and never logged.
 */
export interface ConnectionProfile {
  /** Always {@link CONNECTION_PROFILE_FORMAT}. */
  format: typeof CONNECTION_PROFILE_FORMAT;
  /**
   * Control-channel URL; its scheme picks the binding: `wss://host[:port]/path` (WebSocket) or
   * `mqtts://host[:port]` (MQTT through a broker). `ws://` and `mqtt://` only when the agent allows
   * insecure transport.
   */
  serverUrl: string;
  /** MQTT protocol level for an `mqtt(s)://` URL: 5 (MQTT 5.0, the default) or 4 (MQTT 3.1.1, for brokers without 5). */
  mqttVersion?: MqttProtocolVersion;
  /** PEM of the CA certificate(s) that verify the server's TLS certificate (channel and downloads). */
  caCertPem: string;
  /** PEM certificates the device trusts to sign update packets (at least one; several allow rotation). */
  trustAnchorsPem: string[];
  /**
   * The same anchors with the scope each was given for (since protocol 1.1): `server`, `account`
   * (the account's packet policy) or `vendor` (firmware catalogue). Informational: the device trusts
   * exactly `trustAnchorsPem`; profiles without it are valid.
   */
  trustAnchors?: TrustAnchor[];
  /** Device id assigned by the server at registration (1–64 of `[A-Za-z0-9._:-]`). */
  deviceId: string;
  /** Serial number the device was registered under (1–64 of `[A-Za-z0-9._-]`). */
  serialNumber: string;
  /** Device secret sent in `hello` (16–256 characters). */
  credential: string;
  /** Keep-alive parameters used until the server's `welcome.session` replaces them (seconds). */
  keepAlive?: { pingIntervalSec: number; pongTimeoutSec: number; sessionTimeoutSec: number };
}

export type ProfileValidation = { ok: true; profile: ConnectionProfile } | { ok: false; errors: string[] };

/**
 * The certificates of a PEM text, or undefined when one does not parse. Node's own X.509 parser,
 * not node-forge: a router checks its profile at every start, and forge's modules are then not
 * loaded unless a packet is verified. RSA keys only, as forge (the packet verifier) requires.
 */
function pemCertificates(pem: string): X509Certificate[] | undefined {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (!blocks) return undefined;
  try {
    const certificates = blocks.map((b) => new X509Certificate(b));
    return certificates.every((c) => c.publicKey.asymmetricKeyType === 'rsa') ? certificates : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Checks a parsed profile. Never throws. `allowInsecure` admits `ws://` and `mqtt://` URLs (tests, development).
 * Unknown fields are ignored (forward compatibility) and dropped from the result.
 */
export function validateConnectionProfile(value: unknown, options: { allowInsecure?: boolean } = {}): ProfileValidation {
  const errors: string[] = [];
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, errors: ['not a JSON object'] };
  const v = value as Record<string, unknown>;
  if (v.format !== CONNECTION_PROFILE_FORMAT) errors.push(`format must be "${CONNECTION_PROFILE_FORMAT}"`);
  const url = typeof v.serverUrl === 'string' ? v.serverUrl : '';
  try {
    const parsed = new URL(url);
    const ok = parsed.protocol === 'wss:' || parsed.protocol === 'mqtts:'
      || (options.allowInsecure === true && (parsed.protocol === 'ws:' || parsed.protocol === 'mqtt:'));
    if (!ok) errors.push('serverUrl must be a wss:// or mqtts:// URL');
  } catch {
    errors.push('serverUrl must be a URL');
  }
  if (typeof v.caCertPem !== 'string' || !pemCertificates(v.caCertPem)) errors.push('caCertPem must hold PEM certificates');
  if (
    !Array.isArray(v.trustAnchorsPem)
    || v.trustAnchorsPem.length === 0
    || v.trustAnchorsPem.length > 16
    || !v.trustAnchorsPem.every((p) => typeof p === 'string' && pemCertificates(p))
  ) {
    errors.push('trustAnchorsPem must be 1–16 PEM certificates');
  }
  let scoped: TrustAnchor[] | undefined;
  if (v.trustAnchors !== undefined) {
    const list = v.trustAnchors;
    const ok = Array.isArray(list)
      && list.length <= MAX_TRUST_ANCHORS
      && list.every((a) => {
        const x = a as Record<string, unknown>;
        return typeof a === 'object' && a !== null && (TRUST_ANCHOR_SCOPES as readonly unknown[]).includes(x.scope)
          && typeof x.certPem === 'string' && pemCertificates(x.certPem) !== undefined;
      });
    if (!ok) errors.push('trustAnchors must be up to 16 {scope: server|account|vendor, certPem} entries');
    else scoped = (list as TrustAnchor[]).map((a) => ({ scope: a.scope, certPem: a.certPem }));
  }
  if (!isIdentifier(v.deviceId)) errors.push('deviceId is invalid');
  if (!isSerialNumber(v.serialNumber)) errors.push('serialNumber is invalid');
  if (typeof v.credential !== 'string' || v.credential.length < 16 || v.credential.length > 256) {
    errors.push('credential must be 16–256 characters');
  }
  let keepAlive: ConnectionProfile['keepAlive'];
  if (v.keepAlive !== undefined) {
    const k = v.keepAlive as Record<string, unknown>;
    const int = (x: unknown, min: number, max: number) => Number.isInteger(x) && (x as number) >= min && (x as number) <= max;
    if (
      typeof k !== 'object'
      || k === null
      || !int(k.pingIntervalSec, 5, 3600)
      || !int(k.pongTimeoutSec, 1, 3600)
      || !int(k.sessionTimeoutSec, 1, 3600)
    ) {
      errors.push('keepAlive needs integer pingIntervalSec (5–3600), pongTimeoutSec and sessionTimeoutSec (1–3600)');
    } else {
      keepAlive = {
        pingIntervalSec: k.pingIntervalSec as number,
        pongTimeoutSec: k.pongTimeoutSec as number,
        sessionTimeoutSec: k.sessionTimeoutSec as number,
      };
    }
  }
  if (v.mqttVersion !== undefined && v.mqttVersion !== 4 && v.mqttVersion !== 5) errors.push('mqttVersion must be 4 (MQTT 3.1.1) or 5');
  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    profile: {
      format: CONNECTION_PROFILE_FORMAT,
      serverUrl: url,
      ...(v.mqttVersion !== undefined ? { mqttVersion: v.mqttVersion as MqttProtocolVersion } : {}),
      caCertPem: v.caCertPem as string,
      trustAnchorsPem: [...(v.trustAnchorsPem as string[])],
      ...(scoped ? { trustAnchors: scoped } : {}),
      deviceId: v.deviceId as string,
      serialNumber: v.serialNumber as string,
      credential: v.credential as string,
      ...(keepAlive ? { keepAlive } : {}),
    },
  };
}

/** Parses profile bytes (UTF-8 JSON). Never throws. */
export function parseConnectionProfile(bytes: Uint8Array, options: { allowInsecure?: boolean } = {}): ProfileValidation {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return { ok: false, errors: ['not UTF-8 JSON'] };
  }
  return validateConnectionProfile(value, options);
}

/**
 * Digest of a set of trust anchors: SHA-256 (lower-case hex) over the sorted, de-duplicated SHA-256
 * fingerprints of the certificates' DER, one per line. Independent of order, PEM line breaks and
 * duplicates, so the device and the server compute the same value from the same certificates.
 * Never throws: a PEM block that does not parse counts by the digest of its text.
 */
export function trustAnchorsDigest(pems: readonly string[]): string {
  const prints = new Set<string>();
  for (const pem of pems) {
    const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [pem];
    for (const block of blocks) {
      try {
        prints.add(createHash('sha256').update(new X509Certificate(block).raw).digest('hex'));
      } catch {
        prints.add(createHash('sha256').update(block.trim()).digest('hex'));
      }
    }
  }
  return createHash('sha256').update([...prints].sort().join('\n')).digest('hex');
}
