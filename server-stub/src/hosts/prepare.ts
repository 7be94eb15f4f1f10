import type { ServerConfig } from '../config.js';
import { loadOrCreateServerKey } from '../devices/credentials.js';
import { loadOrCreateSigningPki } from '../pki/signing.js';
import { isPostgresUrl, Store } from '../store/database.js';
import { adoptSharedFiles, publishSharedFiles } from './shared-files.js';

/**
 * Before a server process with a PostgreSQL store builds its services: its data directory gets the
 * cluster's shared files (server key, signing PKI, local TLS CA; hosts/shared-files.ts). What no
 * host made yet is made here and published; when several hosts start at once and each made its
 * own, the first to commit wins and the others take its files before using theirs. Returns the
 * names taken from the store. With the SQLite store: nothing to do (one host, one data directory).
 */
export async function prepareSharedMaterial(config: ServerConfig, now: Date = new Date()): Promise<string[]> {
  if (!config.store || !isPostgresUrl(config.store)) return [];
  const store = Store.select(config.store, config.dataDir, { busyTimeoutMs: config.storeBusyTimeoutMs, now: now.getTime() });
  try {
    const adopted = adoptSharedFiles(store, config.dataDir);
    loadOrCreateServerKey(config.dataDir);
    await loadOrCreateSigningPki(config.dataDir, now);
    publishSharedFiles(store, config.dataDir, { replace: false, now: now.getTime() });
    adopted.push(...adoptSharedFiles(store, config.dataDir));
    return [...new Set(adopted)];
  } finally {
    store.close();
  }
}
