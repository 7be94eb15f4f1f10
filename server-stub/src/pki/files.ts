import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * Writes a set of files into `dir` all at once: they are written into a fresh sibling directory,
 * which is then renamed to `dir`. Renaming onto an existing non-empty directory fails, so when
 * several processes start at once exactly one set wins and the others read it. Returns false when
 * `dir` already existed (the caller then reads what is there).
 */
export function createDirOnce(dir: string, files: Readonly<Record<string, { data: string; mode: number }>>): boolean {
  if (existsSync(dir)) return false;
  mkdirSync(dirname(dir), { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  mkdirSync(tmp, { mode: 0o700 });
  try {
    for (const [name, f] of Object.entries(files)) writeFileSync(join(tmp, name), f.data, { mode: f.mode });
    try {
      renameSync(tmp, dir);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') return false;
      throw err;
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

export function readText(path: string): string {
  return readFileSync(path, 'utf8');
}

/** The PEM certificate blocks of a file's text, in order. */
export function pemBlocks(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g)?.map((b) => b.trimEnd() + '\n') ?? [];
}
