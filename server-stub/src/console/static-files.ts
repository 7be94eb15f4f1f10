import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where `scripts/build-console.mjs` writes the console (the same path from src/console and dist/console). */
export const CONSOLE_DIR = fileURLToPath(new URL('../../dist/console/public/', import.meta.url));

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

export interface StaticFile {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
  /** File names with a content hash never change: cached for a year; index.html is revalidated. */
  readonly immutable: boolean;
}

/**
 * The built console, read into memory once at start: a few hundred kilobytes in a handful of files.
 * Serving from a map (URL path → file) means no file system access per request and no path
 * traversal to guard against. Empty when the console was not built.
 */
export function loadStaticFiles(dir: string = CONSOLE_DIR): ReadonlyMap<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  if (!existsSync(dir)) return files;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    const rel = relative(dir, path).split('\\').join('/');
    const type = TYPES[extname(entry.name)];
    if (!type) continue;
    const body = readFileSync(path);
    files.set(`/${rel}`, {
      body,
      type,
      etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
      immutable: /-[A-Z0-9]{8,}\.\w+(\.map)?$/.test(entry.name),
    });
  }
  return files;
}
