import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Store } from '../store/database.js';
import { SharedFilesRepo } from '../store/shared-files.js';

/**
 * The files of the data directory every host of a cluster must hold identically (paths relative to
 * the data directory): the server key (device credentials in connection profiles, download
 * tokens), the packet-signing PKI (profiles and built packets; the roots devices trust) and the
 * local TLS CA of `fleet-server tls generate` (the CA connection profiles name). Retired signers
 * (`signing/retired/`) are a local record only.
 */
export const SHARED_FILES: readonly string[] = [
  'server.key',
  'signing/root-ca.pem',
  'signing/root-ca.key',
  'signing/signer.pem',
  'signing/signer.key',
  'signing/signer-chain.pem',
  'signing/trust-anchors.pem',
  'signing/vendor-anchors.pem',
  'tls/ca.pem',
  'tls/ca.key',
  'tls/server.pem',
  'tls/server.key',
];

/** Whether this store is shared by hosts that do not share a file system (then the files above live in it too). */
export function sharesFiles(store: Store): boolean {
  return store.dialect === 'postgres';
}

function modeOf(name: string): number {
  return name.endsWith('.key') ? 0o600 : 0o644;
}

function readLocal(dataDir: string, name: string): Buffer | undefined {
  const path = join(dataDir, name);
  return existsSync(path) ? readFileSync(path) : undefined;
}

function writeLocal(dataDir: string, name: string, data: Buffer): void {
  const path = join(dataDir, name);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode: modeOf(name) });
  renameSync(tmp, path);
}

function inScope(name: string, prefix: string | undefined): boolean {
  return prefix === undefined || name.startsWith(prefix);
}

/**
 * Makes the data directory hold what the store holds (the store wins): files that differ are
 * rewritten, files the store no longer has are removed (a retired anchor file, a chain a rotation
 * dropped). Only names under `prefix` when given. Returns the names changed here.
 */
export function adoptSharedFiles(store: Store, dataDir: string, prefix?: string): string[] {
  const inStore = store.read(() => new SharedFilesRepo(store).all());
  const changed: string[] = [];
  // Nothing published yet: the local files are all there is (the first host publishes them).
  if (inStore.size === 0) return changed;
  for (const name of SHARED_FILES) {
    if (!inScope(name, prefix)) continue;
    const want = inStore.get(name);
    const have = readLocal(dataDir, name);
    if (want) {
      if (!have || !have.equals(want)) {
        writeLocal(dataDir, name, want);
        changed.push(name);
      }
    } else if (have && name.startsWith('signing/') && inStore.has('signing/signer.pem')) {
      // The cluster's signing directory has no such file (a chain or vendor roots removed elsewhere).
      rmSync(join(dataDir, name), { force: true });
      changed.push(name);
    }
  }
  return changed;
}

/**
 * Puts the data directory's files into the store. `replace: false` (at start): only names the
 * store does not have yet (so when several hosts start at once, the first to commit wins and the
 * others adopt its files). `replace: true` (after a rotation, retirement or import done here):
 * the local files become the cluster's, including removals. Returns the names written.
 */
export function publishSharedFiles(store: Store, dataDir: string, opts: { replace: boolean; prefix?: string; now?: number }): string[] {
  const now = opts.now ?? Date.now();
  const repo = new SharedFilesRepo(store);
  return store.write(() => {
    const have = repo.all();
    const written: string[] = [];
    for (const name of SHARED_FILES) {
      if (!inScope(name, opts.prefix)) continue;
      const local = readLocal(dataDir, name);
      const stored = have.get(name);
      if (local && (!stored || (opts.replace && !stored.equals(local)))) {
        repo.put(name, local, now);
        written.push(name);
      } else if (!local && stored && opts.replace) {
        repo.delete(name);
        written.push(name);
      }
    }
    return written;
  });
}

/**
 * Runs a change of the data directory's signing files (a rotation, a retirement, vendor roots
 * added) that becomes the cluster's: with a shared store the store's files are taken first, so the
 * change is made to the cluster's current set and not to a copy that another host's change has
 * replaced since this host's last trust-anchor reload (publishing that copy would undo it); then
 * the result is published, removals included. Without a shared store: `change` alone.
 */
export async function changeSigningFiles<T>(store: Store, dataDir: string, change: () => Promise<T> | T): Promise<T> {
  if (!sharesFiles(store)) return change();
  adoptSharedFiles(store, dataDir, 'signing/');
  const result = await change();
  publishSharedFiles(store, dataDir, { replace: true, prefix: 'signing/' });
  return result;
}
