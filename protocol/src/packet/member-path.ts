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
