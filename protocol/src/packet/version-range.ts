/**
 * A small, dependency-free subset of semantic versioning, enough for `VERSION` and `REQUIRED_SW`.
 *
 * Versions: `MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD]`, optional leading `v`; missing parts are 0
 * (`2.3` is `2.3.0`), build metadata is ignored. Ranges follow node-semver's syntax: `||`
 * alternatives of space-separated comparators (`<`, `<=`, `>`, `>=`, `=`), caret `^1.2`, tilde
 * `~1.2.3`, x-ranges `1.2.x` / `1.*` / `*`, partial versions `1.2`, hyphen ranges `1.2 - 2.0`.
 * Unlike node-semver, a prerelease version is not excluded from ranges that name no prerelease: it
 * simply compares by semver precedence. Also unlike node-semver's `valid`, a partial version such
 * as `10.3` (routers report such) is a version, and a leading `=` or surrounding blanks are not.
 * This is the one version rule: routers check packets by it and the server picks firmware by it.
 */

/** A parsed version. */
export interface Version {
  /** Major version. */
  major: number;
  /** Minor version (0 when not written). */
  minor: number;
  /** Patch version (0 when not written). */
  patch: number;
  /** Prerelease identifiers (`rc.1` → `['rc', 1]`); empty for a release. */
  prerelease: readonly (string | number)[];
}

const VERSION_RE =
  /^v?(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/;

/** Parses a version, or returns undefined when it is not one. */
export function parseVersion(text: string): Version | undefined {
  const m = VERSION_RE.exec(text);
  if (!m) return undefined;
  const num = (s: string | undefined) => (s === undefined ? 0 : Number(s));
  const major = num(m[1]);
  const minor = num(m[2]);
  const patch = num(m[3]);
  if (!Number.isSafeInteger(major) || !Number.isSafeInteger(minor) || !Number.isSafeInteger(patch)) {
    return undefined;
  }
  const prerelease = m[4] === undefined ? [] : m[4].split('.').map((p) => (/^\d+$/.test(p) ? Number(p) : p));
  return { major, minor, patch, prerelease };
}

/** Semver precedence: negative when a < b, 0 when equal, positive when a > b. */
export function compareVersions(a: Version, b: Version): number {
  if (a.major !== b.major) return a.major - b.major;
  if (a.minor !== b.minor) return a.minor - b.minor;
  if (a.patch !== b.patch) return a.patch - b.patch;
  const pa = a.prerelease;
  const pb = b.prerelease;
  if (pa.length === 0 || pb.length === 0) return pb.length - pa.length; // release > prerelease
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i];
    const y = pb[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    if (x === y) continue;
    if (typeof x === 'number' && typeof y === 'number') return x - y;
    if (typeof x === 'number') return -1;
    if (typeof y === 'number') return 1;
    return x < y ? -1 : 1;
  }
  return 0;
}

/**
 * True when both texts are versions ({@link parseVersion}) and `candidate` is newer than `than` by
 * semver precedence. The server picks firmware by this rule (catalogue order, Smart Updates), so a
 * version it can offer is one the routers' compatibility check can compare.
 */
export function isNewerVersion(candidate: string, than: string): boolean {
  const a = parseVersion(candidate);
  const b = parseVersion(than);
  return a !== undefined && b !== undefined && compareVersions(a, b) > 0;
}

/** One comparison of a {@link VersionRange}. */
export interface VersionComparator {
  /** The operator (carets, tildes, x-ranges and hyphens are desugared into these). */
  op: '<' | '<=' | '>' | '>=' | '=';
  /** The version compared with. */
  version: Version;
}
type Comparator = VersionComparator;
/** A parsed range: alternatives (OR) of comparator sets (AND). */
export type VersionRange = readonly (readonly Comparator[])[];

// A partial version: components after the first wildcard or missing one are undefined.
interface PartialVersion {
  major?: number;
  minor?: number;
  patch?: number;
  prerelease: readonly (string | number)[];
}

const PARTIAL_RE =
  /^v?(0|[1-9]\d*|[xX*])(?:\.(0|[1-9]\d*|[xX*]))?(?:\.(0|[1-9]\d*|[xX*]))?(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/;

function parsePartial(text: string): PartialVersion | undefined {
  if (text === '' || text === '*' || text === 'x' || text === 'X') return { prerelease: [] };
  const m = PARTIAL_RE.exec(text);
  if (!m) return undefined;
  const parts: (number | undefined)[] = [];
  let wild = false;
  for (const raw of [m[1], m[2], m[3]]) {
    if (wild || raw === undefined || /^[xX*]$/.test(raw)) {
      wild = true;
      parts.push(undefined);
    } else {
      const n = Number(raw);
      if (!Number.isSafeInteger(n)) return undefined;
      parts.push(n);
    }
  }
  const prerelease = m[4] === undefined ? [] : m[4].split('.').map((p) => (/^\d+$/.test(p) ? Number(p) : p));
  if (prerelease.length > 0 && parts[2] === undefined) return undefined;
  return { major: parts[0], minor: parts[1], patch: parts[2], prerelease };
}

const v = (major: number, minor: number, patch: number, prerelease: readonly (string | number)[] = []) => ({
  major,
  minor,
  patch,
  prerelease,
});
// The lowest version of a line: `<2.0.0-0` excludes 2.0.0's prereleases too.
const floor = (major: number, minor: number, patch: number) => v(major, minor, patch, [0]);

function lower(p: PartialVersion): Version {
  return v(p.major ?? 0, p.minor ?? 0, p.patch ?? 0, p.prerelease);
}

// The exclusive upper bound of a partial version (`1.2` -> `<1.3.0-0`), or undefined for `*`.
function exclusiveUpper(p: PartialVersion): Version | undefined {
  if (p.major === undefined) return undefined;
  if (p.minor === undefined) return floor(p.major + 1, 0, 0);
  if (p.patch === undefined) return floor(p.major, p.minor + 1, 0);
  return undefined;
}

function desugar(op: string, p: PartialVersion): Comparator[] | undefined {
  const upper = exclusiveUpper(p);
  const exact = p.patch !== undefined;
  switch (op) {
    case '':
    case '=':
      if (exact) return [{ op: '=', version: lower(p) }];
      if (p.major === undefined) return [];
      return [
        { op: '>=', version: lower(p) },
        { op: '<', version: upper! },
      ];
    case '>=':
      return p.major === undefined ? [] : [{ op: '>=', version: lower(p) }];
    case '<':
      if (p.major === undefined) return [{ op: '<', version: floor(0, 0, 0) }];
      return [{ op: '<', version: exact ? lower(p) : floor(p.major, p.minor ?? 0, 0) }];
    case '>':
      if (p.major === undefined) return [{ op: '<', version: floor(0, 0, 0) }];
      return exact ? [{ op: '>', version: lower(p) }] : [{ op: '>=', version: upper! }];
    case '<=':
      if (p.major === undefined) return [];
      return exact ? [{ op: '<=', version: lower(p) }] : [{ op: '<', version: upper! }];
    case '~': {
      if (p.major === undefined) return [];
      const hi = p.minor === undefined ? floor(p.major + 1, 0, 0) : floor(p.major, p.minor + 1, 0);
      return [
        { op: '>=', version: lower(p) },
        { op: '<', version: hi },
      ];
    }
    case '^': {
      if (p.major === undefined) return [];
      let hi: Version;
      if (p.major > 0 || p.minor === undefined) hi = floor(p.major + 1, 0, 0);
      else if (p.minor > 0 || p.patch === undefined) hi = floor(0, p.minor + 1, 0);
      else hi = floor(0, 0, p.patch + 1);
      return [
        { op: '>=', version: lower(p) },
        { op: '<', version: hi },
      ];
    }
    default:
      return undefined;
  }
}

/** Parses a range, or returns undefined when it is not one. An empty string matches every version. */
export function parseVersionRange(text: string): VersionRange | undefined {
  if (text.length > 1024) return undefined;
  const sets: Comparator[][] = [];
  for (const alternative of text.split('||')) {
    const trimmed = alternative.trim();
    const set: Comparator[] = [];
    const hyphen = /^(\S+)\s+-\s+(\S+)$/.exec(trimmed);
    if (hyphen) {
      const from = parsePartial(hyphen[1]!);
      const to = parsePartial(hyphen[2]!);
      if (!from || !to) return undefined;
      set.push(...(desugar('>=', from) ?? []), ...(desugar('<=', to) ?? []));
    } else if (trimmed !== '') {
      // Allow a blank between an operator and its version (`>= 1.2`), as node-semver does.
      const tokens = trimmed.replace(/(<=|>=|<|>|=|~|\^)\s+/g, '$1').split(/\s+/);
      for (const token of tokens) {
        const m = /^(<=|>=|<|>|=|~>?|\^)?(.*)$/.exec(token)!;
        const op = (m[1] ?? '').replace('~>', '~');
        const partial = parsePartial(m[2]!);
        if (!partial || (m[2] === '' && op !== '')) return undefined;
        const comparators = desugar(op, partial);
        if (!comparators) return undefined;
        set.push(...comparators);
      }
    }
    sets.push(set);
  }
  return sets;
}

function test(c: Comparator, version: Version): boolean {
  const cmp = compareVersions(version, c.version);
  switch (c.op) {
    case '<':
      return cmp < 0;
    case '<=':
      return cmp <= 0;
    case '>':
      return cmp > 0;
    case '>=':
      return cmp >= 0;
    case '=':
      return cmp === 0;
  }
}

/** True when `version` satisfies `range`; false when it does not or either does not parse. */
export function satisfiesRange(version: string | Version, range: string | VersionRange): boolean {
  const ver = typeof version === 'string' ? parseVersion(version) : version;
  const parsed = typeof range === 'string' ? parseVersionRange(range) : range;
  if (!ver || !parsed) return false;
  return parsed.some((set) => set.every((c) => test(c, ver)));
}
