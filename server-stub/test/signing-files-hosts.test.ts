import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { adoptSharedFiles, publishSharedFiles } from '../src/hosts/shared-files.js';
import { loadOrCreateSigningPki } from '../src/pki/signing.js';
import { SharedFilesRepo } from '../src/store/shared-files.js';
import { seedSigningPki } from './helpers/channel-world.js';
import { freshPostgresStore } from './helpers/postgres.js';
import { removeTempDirs, tempDir, world, type World } from './helpers/setup.js';

/*
 * Two hosts on one PostgreSQL store change the cluster's signing files through their running
 * servers' trust-anchor services (pki/trust-anchors.ts). Always on PostgreSQL: it is the store
 * several hosts share.
 */

const worlds: World[] = [];
afterAll(() => {
  for (const w of worlds) w.close();
  removeTempDirs();
});

describe('signing files changed on one host and then another', () => {
  it('a host that has not reloaded yet changes the cluster\'s current files: the other host\'s rotation stays', async () => {
    const url = freshPostgresStore();
    const dirA = tempDir();
    const dirB = tempDir();
    await seedSigningPki(dirA);
    const a = world({ store: url }, dirA);
    worlds.push(a);
    publishSharedFiles(a.services.store, dirA, { replace: false });
    adoptSharedFiles(a.services.store, dirB);
    const b = world({ store: url }, dirB);
    worlds.push(b);

    await a.services.trust.rotate();
    const rotatedRoot = readFileSync(join(dirA, 'signing', 'root-ca.pem'));
    // B has not reloaded since: its own copy still holds the old root when it adds a vendor root.
    const vendorDir = tempDir();
    await loadOrCreateSigningPki(vendorDir);
    const vendorPem = readFileSync(join(vendorDir, 'signing', 'root-ca.pem'), 'utf8');
    expect(await b.services.trust.addVendor(vendorPem)).toBe(1);

    const stored = b.services.store.read(() => new SharedFilesRepo(b.services.store).all());
    expect(stored.get('signing/root-ca.pem')?.equals(rotatedRoot)).toBe(true);
    expect(stored.get('signing/vendor-anchors.pem')?.toString('utf8')).toContain(vendorPem.trim());
  }, 120_000);
});
