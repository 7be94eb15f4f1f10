/**
 * Rules for member paths (tar member names and MANIFEST FILENAME values). A path is accepted only in
 * canonical relative form, so that two spellings can never name the same file and no spelling can
 * leave the extraction directory: `/`-separated, no leading `/`, no empty, `.` or `..` segment, no
 * trailing `/`, no backslash, no NUL or other control character.
 */

/** Why a path is unsafe, or undefined when it is safe. */
export function unsafePathReason(path: string): string | undefined {
  if (path.length === 0) return 'the path is empty';
  if (path.includes('\0')) return 'the path contains a NUL byte';
  if (path.includes('\\')) return 'the path contains a backslash';
  if (hasControlCharacter(path)) return 'the path contains a control character';
  if (path.startsWith('/')) return 'the path is absolute';
  for (const segment of path.split('/')) {
    if (segment === '..') return 'the path contains a ".." segment';
    if (segment === '.') return 'the path contains a "." segment';
    if (segment === '') return 'the path contains an empty segment (or ends with "/")';
  }
  return undefined;
}

/** True when `text` contains a C0 control character or DEL (optionally allowing TAB). */
export function hasControlCharacter(text: string, allowTab = false): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c < 0x20 && !(allowTab && c === 0x09)) || c === 0x7f) return true;
  }
  return false;
}

/** Number of `/`-separated segments. */
export function pathDepth(path: string): number {
  let depth = 1;
  for (let i = 0; i < path.length; i++) if (path.charCodeAt(i) === 0x2f) depth++;
  return depth;
}

/** Suffix of the staging name a member is written under while it is extracted (`<name>.partial`). */
export const STAGING_SUFFIX = '.partial';

/**
 * The extraction rule for a whole packet: every listed name must be extractable next to all the
 * others into one directory. Two names conflict when one's staging name is taken by the other
 * (`x.cfg` and `x.cfg.partial`, or `x.cfg` and `x.cfg.partial/y`: writing `x.cfg` would overwrite
 * or trip over it) or when a listed file is also the directory of another (`fw` and `fw/a.bin`).
 * Routers refuse such a packet, so the server must refuse its upload too; both get this rule
 * through `readPacket`, whether or not they extract. Returns the first conflict found, or undefined.
 */
export function extractionConflict(names: Iterable<string>): { entry: string; reason: string } | undefined {
  const files = new Set(names);
  // Every path the extracted packet occupies: the files and the directories above them.
  const directories = new Map<string, string>();
  for (const name of files) {
    for (let i = name.indexOf('/'); i > 0; i = name.indexOf('/', i + 1)) {
      const dir = name.slice(0, i);
      if (files.has(dir)) return { entry: name, reason: `needs ${dir} to be a directory, but ${dir} is a listed file` };
      if (!directories.has(dir)) directories.set(dir, name);
    }
  }
  for (const name of files) {
    const staging = `${name}${STAGING_SUFFIX}`;
    if (files.has(staging)) return { entry: staging, reason: `collides with the staging name of ${name}` };
    const under = directories.get(staging);
    if (under !== undefined) return { entry: under, reason: `uses ${staging}, the staging name of ${name}, as a directory` };
  }
  return undefined;
}
