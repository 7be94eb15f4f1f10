import { Buffer } from 'node:buffer';
import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const KEY_FILE = 'server.key';

/**
 * Device credentials. Each device gets a random 256-bit secret at registration. The server keeps
 * its SHA-256 (what a hello is checked against: a fast hash is enough for a random 256-bit secret,
 * and 30,000 reconnecting devices must not cost 30,000 scrypt runs) and the secret itself encrypted
 * with AES-256-GCM under the data directory's server key, so the connection profile can deliver the
 * same secret however often it is downloaded (regenerating on download would lock out a router that
 * already runs an earlier download of its profile).
 */
export class CredentialVault {
  readonly #key: Buffer;
  // Random bytes drawn from the CSPRNG in 64 KiB blocks: a mass registration of 50,000 devices
  // would otherwise spend most of its time in 100,000 small calls.
  #pool = Buffer.alloc(0);
  #offset = 0;

  constructor(key: Buffer) {
    if (key.length !== 32) throw new Error('the server key must be 32 bytes');
    this.#key = key;
  }

  issue(): { secret: string; hash: Buffer; sealed: Buffer } {
    const secret = this.#random(32).toString('base64url');
    return { secret, hash: hashCredential(secret), sealed: this.seal(secret) };
  }

  seal(secret: string): Buffer {
    const iv = this.#random(12);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
    const body = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]);
  }

  /** `n` fresh random bytes (a copy: pool bytes are never handed out twice). */
  #random(n: number): Buffer {
    if (this.#offset + n > this.#pool.length) {
      this.#pool = randomBytes(65_536);
      this.#offset = 0;
    }
    const out = Buffer.from(this.#pool.subarray(this.#offset, this.#offset + n));
    this.#pool.fill(0, this.#offset, this.#offset + n);
    this.#offset += n;
    return out;
  }

  /** The device secret, for the connection profile. Throws if the record was tampered with. */
  reveal(sealed: Buffer): string {
    const decipher = createDecipheriv('aes-256-gcm', this.#key, sealed.subarray(0, 12));
    decipher.setAuthTag(sealed.subarray(12, 28));
    return Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]).toString('utf8');
  }
}

export function hashCredential(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

export function credentialMatches(secret: string, hash: Buffer): boolean {
  const candidate = hashCredential(secret);
  return candidate.length === hash.length && timingSafeEqual(candidate, hash);
}

/** Reads the data directory's server key, creating it (mode 0600, exclusively) on first start. */
export function loadOrCreateServerKey(dataDir: string): Buffer {
  const path = join(dataDir, KEY_FILE);
  try {
    const fd = openSync(path, 'wx', 0o600);
    try {
      writeSync(fd, randomBytes(32));
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const key = readFileSync(path);
  if (key.length !== 32) throw new Error(`${path} is not a 32-byte key`);
  return key;
}
