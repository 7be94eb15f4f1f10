import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createCa, issueCertificate } from '@router-fleet/protocol';
import { createDirOnce } from './files.js';

/** Directory of `fleet-server tls generate`'s output inside the data directory. */
export const TLS_DIR = 'tls';

export interface LocalTlsFiles {
  readonly dir: string;
  readonly caCert: string;
  readonly cert: string;
  readonly key: string;
}

export function localTlsFiles(dataDir: string): LocalTlsFiles {
  const dir = join(dataDir, TLS_DIR);
  return { dir, caCert: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key') };
}

export interface LocalTlsOptions {
  /** DNS names of the server certificate. Default `['localhost']`. */
  readonly hosts?: readonly string[];
  /** IP addresses of the server certificate. Default `['127.0.0.1', '::1']`. */
  readonly ips?: readonly string[];
  readonly now?: Date;
}

/**
 * Makes a local CA and a server certificate issued by it (for demos and tests, not production) in
 * `DATA/tls/`: `ca.pem` (goes into connection profiles), `ca.key`, `server.pem`, `server.key`.
 * Refuses to overwrite an existing directory. Serve with `--tls-cert DATA/tls/server.pem
 * --tls-key DATA/tls/server.key`.
 */
export async function generateLocalTls(dataDir: string, options: LocalTlsOptions = {}): Promise<LocalTlsFiles> {
  const files = localTlsFiles(dataDir);
  if (existsSync(files.dir)) throw new Error(`${files.dir} exists already; remove it to generate new certificates`);
  const now = options.now ?? new Date();
  const ca = await createCa({ commonName: 'router-fleet Local TLS CA', organization: 'router-fleet server', now });
  const server = await issueCertificate({
    commonName: options.hosts?.[0] ?? 'localhost',
    organization: 'router-fleet server',
    issuer: ca,
    now,
    extKeyUsage: ['serverAuth'],
    subjectAltNames: { dns: options.hosts ?? ['localhost'], ip: options.ips ?? ['127.0.0.1', '::1'] },
  });
  const created = createDirOnce(files.dir, {
    'ca.pem': { data: ca.certPem, mode: 0o644 },
    'ca.key': { data: ca.keyPem, mode: 0o600 },
    'server.pem': { data: server.certPem, mode: 0o644 },
    'server.key': { data: server.keyPem, mode: 0o600 },
  });
  if (!created) throw new Error(`${files.dir} exists already`);
  return files;
}
