import { X509Certificate } from 'node:crypto';
import { type TrustAnchorsBody, trustAnchorsDigest } from '@router-fleet/protocol';
import { AgentError } from '../errors.js';
import type { ProfileStore } from '../installers/installer.js';

/**
 * The packet-signing trust anchors of this device. They live in the connection profile (one file,
 * written atomically: temp file, fsync, rename), so a power cut leaves the old or the new set and
 * a re-provisioning replaces them with the server's current set.
 *
 * Updates arrive only as a `trust-anchors` message on the welcomed TLS session (the caller
 * guarantees that); a packet can never change whom the device trusts.
 */
export class TrustAnchorStore {
  readonly #profiles: ProfileStore;

  constructor(profiles: ProfileStore) {
    this.#profiles = profiles;
  }

  /** The anchors packets must chain to now. */
  current(): readonly string[] {
    return this.#profiles.current().trustAnchorsPem;
  }

  /** `trustAnchorsDigest` of the current set (reported in hello and status). */
  digest(): string {
    return trustAnchorsDigest(this.current());
  }

  /**
   * Replaces the set with `body.anchors` once every entry is a certificate and the digest matches.
   * Returns false when the set is already the current one. Throws AGENT_TRUST_ANCHORS_INVALID
   * (nothing changed) otherwise.
   */
  async apply(body: TrustAnchorsBody): Promise<boolean> {
    for (const a of body.anchors) {
      try {
        const cert = new X509Certificate(a.certPem);
        if (!cert.ca) throw new Error('not a CA certificate');
      } catch (error) {
        throw new AgentError('AGENT_TRUST_ANCHORS_INVALID', `a ${a.scope} anchor is not a CA certificate: ${(error as Error).message}`);
      }
    }
    const pems = body.anchors.map((a) => a.certPem);
    const digest = trustAnchorsDigest(pems);
    if (digest !== body.digest) throw new AgentError('AGENT_TRUST_ANCHORS_INVALID', 'the digest does not match the anchors sent');
    if (digest === this.digest()) return false;
    const profile = this.#profiles.current();
    await this.#profiles.replace(
      { ...profile, trustAnchorsPem: pems, trustAnchors: body.anchors.map((a) => ({ scope: a.scope, certPem: a.certPem })) },
      false,
    );
    return true;
  }
}
