import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli.js';
import { loadOrCreateSigningPki } from '../src/pki/signing.js';
import { Store } from '../src/store/database.js';
import { freshPostgresStore } from './helpers/postgres.js';
import { removeTempDirs, tempDir } from './helpers/setup.js';

/*
 * `fleet-server signing … --store postgres://…` works on the signing files that the hosts of one
 * store share (cli-firmware.ts). Always on PostgreSQL: it is the store several hosts share.
 */

afterAll(() => removeTempDirs());

const storedNames = (url: string, dir: string) => {
  const store = Store.select(url, dir);
  try {
    return store.stmt<{ name: string }>('SELECT name FROM shared_files ORDER BY name').all().map((r) => r.name);
  } finally {
    store.close();
  }
};

describe('signing commands on the cluster\'s store', () => {
  it('list only reads: it never makes the data directory\'s files the cluster\'s; rotate publishes its result', async () => {
    const url = freshPostgresStore();
    const dir = tempDir();
    await loadOrCreateSigningPki(dir);
    const lines: string[] = [];
    await runCli(['signing', 'list', '--data', dir, '--store', url], (l) => lines.push(l));
    expect((JSON.parse(lines[0]!) as { anchors: unknown[] }).anchors.length).toBeGreaterThan(0);
    expect(storedNames(url, dir)).toEqual([]);

    await runCli(['signing', 'rotate', '--data', dir, '--store', url], () => {});
    expect(storedNames(url, dir)).toEqual(expect.arrayContaining(['signing/root-ca.pem', 'signing/signer.pem', 'signing/trust-anchors.pem']));
  }, 120_000);
});
