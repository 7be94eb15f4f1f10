import { isProtocolError } from '@router-fleet/protocol';
import { type ConnectionProfile, parseConnectionProfile } from './connection-profile.js';
import { loadProfile, saveProfile } from './connection/profile-store.js';
import { AgentError } from './errors.js';
import { collect, tarMember, verifiedStream } from './jobs/payload.js';
import { readPacket } from './packet-api.js';
import type { Storage } from './platform/platform.js';

export interface ProvisionOptions {
  /** The agent's storage (the data directory's `agent/`). */
  storage: Storage;
  /** Explicit trust anchor (PEM) for the packet's signature. Default: see `provisionFromPacket`. */
  trustAnchorPem?: string;
  /** The device clock (signer validity). */
  now: Date;
  allowInsecure: boolean;
}

export interface ProvisionResult {
  profile: ConnectionProfile;
  /** How the packet signature was trusted. */
  trust: 'explicit-anchor' | 'existing-profile' | 'trust-on-first-use';
}

function fromPacket(packet: Uint8Array) {
  return (async function* () {
    yield packet;
  })();
}

/**
 * Applies a connection-profile packet (one section, FILETYPE=ConnectionProfile). The packet must be
 * signed. Its signature is checked against, in order: the `trustAnchorPem` given, the trust anchors
 * of the profile already installed (re-provisioning), or — on first provisioning without an anchor —
 * the trust anchors the packet itself carries (trust on first use: whoever hands the device its
 * first profile decides whom it trusts; pass `--trust-anchor` to pin the server's CA instead).
 */
export async function provisionFromPacket(packet: Uint8Array, options: ProvisionOptions): Promise<ProvisionResult> {
  const fail = (message: string) => new AgentError('AGENT_PROVISION_FAILED', message);
  const read = async (anchors: readonly string[] | undefined) => {
    try {
      return await readPacket(packet, {
        requireSignature: anchors !== undefined,
        ...(anchors ? { trustAnchors: anchors } : {}),
        at: options.now,
        limits: { maxTotalSize: Math.max(packet.length, 1024) },
      });
    } catch (error) {
      if (isProtocolError(error)) throw fail(`${error.code}: ${error.message}`);
      throw error;
    }
  };
  const profileOf = async (result: Awaited<ReturnType<typeof read>>): Promise<ConnectionProfile> => {
    if (result.sections.length !== 1 || result.sections[0]!.fileType !== 'ConnectionProfile') {
      throw fail('the packet must hold exactly one section, FILETYPE=ConnectionProfile');
    }
    const section = result.sections[0]!;
    const bytes = await collect(verifiedStream(tarMember(fromPacket(packet), section.fileName), section.sha256, section.size), 256 * 1024);
    const parsed = parseConnectionProfile(bytes, { allowInsecure: options.allowInsecure });
    if (!parsed.ok) throw new AgentError('AGENT_PROFILE_INVALID', parsed.errors.join('; '));
    return parsed.profile;
  };

  if (options.trustAnchorPem) {
    return { profile: await profileOf(await read([options.trustAnchorPem])), trust: 'explicit-anchor' };
  }
  const existing = await loadProfile(options.storage, options.allowInsecure).catch(() => undefined);
  if (existing) {
    const profile = await profileOf(await read(existing.trustAnchorsPem));
    if (profile.deviceId !== existing.deviceId) throw fail('the packet is for another device id');
    return { profile, trust: 'existing-profile' };
  }
  const unverified = await profileOf(await read(undefined));
  const verified = await profileOf(await read(unverified.trustAnchorsPem));
  return { profile: verified, trust: 'trust-on-first-use' };
}

/** Verifies and stores the profile. */
export async function provision(packet: Uint8Array, options: ProvisionOptions): Promise<ProvisionResult> {
  const result = await provisionFromPacket(packet, options);
  await saveProfile(options.storage, result.profile);
  return result;
}
