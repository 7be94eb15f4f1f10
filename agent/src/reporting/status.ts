import { X509Certificate } from 'node:crypto';
import { CAPABILITIES, type HelloBody, type StatusBody, trustAnchorsDigest } from '@router-fleet/protocol';
import type { ConnectionProfile } from '../connection-profile.js';
import type { Platform, StoredCertificate } from '../platform/platform.js';
import { AGENT_VERSION } from '../version.js';

const VERSION = /^[A-Za-z0-9.+_~-]{1,64}$/;

/** Summary of an installed certificate (never the key). Undefined when the PEM does not parse. */
export function certificateSummary(cert: StoredCertificate): StatusBody['certificates'][number] | undefined {
  try {
    const x509 = new X509Certificate(cert.certPem);
    return {
      fingerprintSha256: x509.fingerprint256.replace(/:/g, '').toLowerCase(),
      subject: x509.subject.replace(/\n/g, ',').slice(0, 512),
      notAfter: new Date(x509.validTo).toISOString(),
      ...(cert.isCa ? { isCa: true } : {}),
    };
  } catch {
    return undefined;
  }
}

const digests = new WeakMap<readonly string[], string>();

/**
 * `trustAnchorsDigest` of a profile's anchors, cached per array: a simulator's devices share one
 * array, and a hello should not parse certificates again for every reconnect.
 */
export function anchorsDigestOf(profile: ConnectionProfile): string {
  let d = digests.get(profile.trustAnchorsPem);
  if (d === undefined) digests.set(profile.trustAnchorsPem, (d = trustAnchorsDigest(profile.trustAnchorsPem)));
  return d;
}

/** The firmware version running now (booted slot). */
export async function runningFirmwareVersion(platform: Platform): Promise<string> {
  const state = await platform.firmware.state();
  return state.versions[state.booted] ?? '0.0.0';
}

/** The `status` body: uptime, link, firmware, configuration, certificates, containers, location. */
export async function buildStatus(platform: Platform, profile?: ConnectionProfile): Promise<StatusBody> {
  const [firmwareVersion, running, certs, containers] = await Promise.all([
    runningFirmwareVersion(platform),
    platform.configuration.running(),
    platform.certificates.list(),
    platform.containers.list(),
  ]);
  const link = platform.network.link();
  const location = platform.system.location();
  return {
    uptimeSec: platform.system.uptimeSec(),
    link: {
      type: link.type,
      up: link.up,
      ...(link.signalQuality !== undefined ? { signalQuality: link.signalQuality } : {}),
      ...(link.rssiDbm !== undefined ? { rssiDbm: link.rssiDbm } : {}),
    },
    firmwareVersion,
    ...(running.version && VERSION.test(running.version) ? { configurationVersion: running.version } : {}),
    certificates: certs
      .map(certificateSummary)
      .filter((c): c is NonNullable<typeof c> => c !== undefined)
      .slice(0, 256),
    containers: containers.slice(0, 64).map((c) => ({ name: c.name, version: c.version, state: c.state })),
    ...(profile ? { trustAnchorsDigest: anchorsDigestOf(profile) } : {}),
    ...(location ? { location } : {}),
  };
}

/** The `hello` body. */
export async function buildHello(platform: Platform, profile: ConnectionProfile): Promise<HelloBody> {
  const [state, running, certs, containers, free] = await Promise.all([
    platform.firmware.state(),
    platform.configuration.running(),
    platform.certificates.list(),
    platform.containers.list(),
    platform.staging.freeBytes().catch(() => undefined),
  ]);
  const identity = platform.system.identity();
  return {
    serialNumber: profile.serialNumber,
    deviceId: profile.deviceId,
    credential: profile.credential,
    model: identity.model,
    firmwareVersion: state.versions[state.booted] ?? '0.0.0',
    agentVersion: AGENT_VERSION,
    capabilities: CAPABILITIES.filter((c) => c !== 'firmware-incremental'),
    bootId: platform.system.bootId(),
    trustAnchorsDigest: anchorsDigestOf(profile),
    inventory: {
      activeSlot: state.booted,
      ...(running.version && VERSION.test(running.version) ? { configurationVersion: running.version } : {}),
      certificates: certs.length,
      containers: containers.length,
      ...(free !== undefined ? { storageFreeBytes: Math.floor(free) } : {}),
      ...(identity.hardwareRevision ? { hardwareRevision: identity.hardwareRevision.slice(0, 32) } : {}),
    },
  };
}
