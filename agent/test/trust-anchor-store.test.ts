import { createCa, sharedTestPki, trustAnchorsDigest } from '@router-fleet/protocol';
import { describe, expect, it } from 'vitest';
import type { ConnectionProfile } from '../src/connection-profile.js';
import { loadProfile, saveProfile, StoredProfiles } from '../src/connection/profile-store.js';
import { TrustAnchorStore } from '../src/connection/trust-anchor-store.js';
import { createMemoryPlatform } from '../src/platform/memory.js';

async function setup() {
  const pki = await sharedTestPki();
  const platform = await createMemoryPlatform({});
  const profile: ConnectionProfile = {
    format: 'router-fleet.connection-profile/1',
    serverUrl: 'wss://fleet.example.net/api/channel',
    caCertPem: pki.root.certPem,
    trustAnchorsPem: [pki.root.certPem],
    deviceId: 'dev-1',
    serialNumber: 'SN-1',
    credential: 'a-device-credential-0123',
  };
  await saveProfile(platform.storage, profile);
  const store = new TrustAnchorStore(new StoredProfiles(platform.storage, profile, false));
  return { pki, platform, store };
}

describe('trust-anchor store', () => {
  it('replaces the set, persists it in the profile and reports the new digest', async () => {
    const { pki, platform, store } = await setup();
    const account = await createCa({ commonName: 'Account Root' });
    const anchors = [
      { scope: 'server' as const, certPem: pki.root.certPem },
      { scope: 'account' as const, certPem: account.certPem },
    ];
    const digest = trustAnchorsDigest(anchors.map((a) => a.certPem));
    expect(store.digest()).not.toBe(digest);
    expect(await store.apply({ anchors, digest })).toBe(true);
    expect(store.current()).toEqual([pki.root.certPem, account.certPem]);
    expect(store.digest()).toBe(digest);
    const reloaded = await loadProfile(platform.storage, false);
    expect(reloaded?.trustAnchorsPem).toEqual([pki.root.certPem, account.certPem]);
    expect(reloaded?.trustAnchors).toEqual(anchors);
    // The same set again changes nothing.
    expect(await store.apply({ anchors, digest })).toBe(false);
  });

  it('refuses a set whose digest does not match, or that holds a certificate that is not a CA; the old set stays', async () => {
    const { pki, store } = await setup();
    const before = store.current();
    await expect(store.apply({ anchors: [{ scope: 'server', certPem: pki.foreignCa.certPem }], digest: 'a'.repeat(64) })).rejects.toMatchObject({
      code: 'AGENT_TRUST_ANCHORS_INVALID',
    });
    const leaf = pki.signer.certPem;
    await expect(store.apply({ anchors: [{ scope: 'account', certPem: leaf }], digest: trustAnchorsDigest([leaf]) })).rejects.toMatchObject({
      code: 'AGENT_TRUST_ANCHORS_INVALID',
    });
    expect(store.current()).toEqual(before);
  });
});
