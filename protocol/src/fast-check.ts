import { Buffer } from 'node:buffer';
import { Kind, OptionalKind, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';

/**
 * Compiles a TypeBox schema to a yes/no check for the codec's fast path. It accepts exactly what
 * TypeBox's own compiled check accepts (a fuzz test compares the two on every message type), but
 * is written for messages just parsed from JSON:
 * - each value is read once into a local, and arrays are walked with an index instead of a closure
 *   and an iterator per call;
 * - a lowercase hex digest (`^[0-9a-f]{n}$`) is checked by its length, and the digests of one
 *   value are gathered and checked together, four bytes at a time (`allLowerHex`);
 * - any other fixed-length character class is matched as `^[class]+$` after its length check (V8
 *   runs the counted form `{64}` at about half the speed: 206 against 100 ns for a 64-character
 *   digest just parsed from JSON, Node 20);
 * - a longer string of one character class is searched for a character outside the class
 *   (`[^class]`) rather than matched whole (`^[class]+$`): 29 against 38 ns for a UUID (Node 20);
 * - a short one found to match is remembered (`shortVerdicts`): the values a fleet repeats
 *   (versions, container names) are then looked up rather than read again.
 * Kinds and keywords it does not know are left to TypeBox's compiled check of that sub-schema, so
 * an unknown schema is never checked more loosely.
 */
export function compileFastCheck(schema: TSchema): (value: unknown) => boolean {
  const externals: unknown[] = [];
  let nextVar = 1;
  const fresh = () => `v${nextVar++}`;
  const external = (value: unknown) => {
    externals.push(value);
    return `x${externals.length - 1}`;
  };

  // The variable holding `allLowerHex`, once a hex digest needs it. The digests of one value are
  // appended to the local `hex` and checked together before the check returns true (or sooner,
  // once they fill the scratch buffer).
  let allHex: string | undefined;

  const delegate = (s: TSchema, v: string): string[] => {
    const check = TypeCompiler.Compile(s);
    return [`if (!${external((value: unknown) => check.Check(value))}(${v})) return false;`];
  };

  const known = (s: TSchema, keywords: readonly string[]) =>
    Object.keys(s).every((k) => k === 'description' || k === 'title' || k === '$id' || keywords.includes(k));

  const literal = (value: unknown) => JSON.stringify(value);
  const isNum = (value: unknown) => value === undefined || (typeof value === 'number' && !Number.isNaN(value));

  /** Statements that `return false` unless the value in variable `v` satisfies `s`. */
  function statements(s: TSchema, v: string): string[] {
    const kind = (s as { [Kind]?: string })[Kind];
    switch (kind) {
      case 'Object': {
        if (!known(s, ['type', 'properties', 'required'])) break;
        const out = [`if (typeof ${v} !== 'object' || ${v} === null || Array.isArray(${v})) return false;`];
        for (const [key, prop] of Object.entries(s.properties as Record<string, TSchema>)) {
          const pv = fresh();
          out.push(`const ${pv} = ${v}[${literal(key)}];`);
          const optional = (prop as { [OptionalKind]?: string })[OptionalKind] === 'Optional';
          if (!optional && acceptsUndefined(prop)) return delegate(s, v);
          const inner = statements(prop, pv);
          if (optional) out.push(`if (${pv} !== undefined) {`, ...inner, '}');
          else out.push(...inner);
        }
        return out;
      }
      case 'String': {
        if (!known(s, ['type', 'minLength', 'maxLength', 'pattern'])) break;
        const out = [`if (typeof ${v} !== 'string') return false;`];
        const hexLength = s.pattern === undefined ? undefined : fixedHexLength(s.pattern as string);
        // A hex digest's pattern fixes its length: the bounds are tested only where they refuse more.
        if (s.maxLength !== undefined && !(Number(s.maxLength) >= (hexLength ?? Infinity)))
          out.push(`if (${v}.length > ${Number(s.maxLength)}) return false;`);
        if (s.minLength !== undefined && !(Number(s.minLength) <= (hexLength ?? -Infinity)))
          out.push(`if (${v}.length < ${Number(s.minLength)}) return false;`);
        if (hexLength !== undefined) {
          allHex ??= external(allLowerHex);
          out.push(
            `if (${v}.length !== ${hexLength}) return false;`,
            `hex += ${v};`,
            `if (hex.length > ${HEX_FLUSH}) {`,
            `if (!${allHex}(hex)) return false;`,
            `hex = '';`,
            '}',
          );
        } else if (s.pattern !== undefined) {
          const pattern = fasterPattern(s);
          const re = external(new RegExp(simplerPattern(pattern)));
          const table = classTable(pattern);
          const outside = classComplement(pattern);
          if (pattern !== s.pattern && Number(s.minLength) > SHORT_STRING) {
            // A fixed length other than a hex digest's: V8 matches the anchored class faster than it
            // searches for a character outside it (49 against 64 ns for 64 characters just parsed,
            // Node 20), where for identifiers the search is the faster (40 against 45 for a UUID).
            out.push(`if (!${re}.test(${v})) return false;`);
          } else if (table === undefined || outside === undefined) {
            out.push(`if (!${re}.test(${v})) return false;`);
          } else {
            const t = external(table);
            const o = external(outside);
            const seen = external(shortVerdicts(pattern));
            const i = fresh();
            const c = fresh();
            out.push(
              `if (${v}.length > ${SHORT_STRING}) {`,
              `if (${o}.test(${v})) return false;`,
              `} else if (!${seen}.has(${v})) {`,
              `if (${v}.length === 0) return false;`,
              `for (let ${i} = 0; ${i} < ${v}.length; ${i}++) {`,
              `const ${c} = ${v}.charCodeAt(${i});`,
              `if (${c} > 127) { if (!${re}.test(${v})) return false; break; }`,
              `if (${t}[${c}] === 0) return false;`,
              '}',
              `if (${seen}.size >= ${SHORT_VERDICTS}) ${seen}.clear();`,
              `${seen}.add(${v});`,
              '}',
            );
          }
        }
        return out;
      }
      case 'Number':
      case 'Integer': {
        if (!known(s, ['type', 'minimum', 'maximum']) || !isNum(s.minimum) || !isNum(s.maximum)) break;
        const test = kind === 'Integer' ? 'Number.isInteger' : 'Number.isFinite';
        const out = [`if (!${test}(${v})) return false;`];
        if (s.maximum !== undefined) out.push(`if (${v} > ${String(s.maximum)}) return false;`);
        if (s.minimum !== undefined) out.push(`if (${v} < ${String(s.minimum)}) return false;`);
        return out;
      }
      case 'Boolean':
        if (!known(s, ['type'])) break;
        return [`if (typeof ${v} !== 'boolean') return false;`];
      case 'Null':
        if (!known(s, ['type'])) break;
        return [`if (${v} !== null) return false;`];
      case 'Literal':
        if (!known(s, ['type', 'const'])) break;
        if (typeof s.const !== 'string' && typeof s.const !== 'boolean' && !Number.isFinite(s.const)) break;
        return [`if (${v} !== ${literal(s.const)}) return false;`];
      case 'Union': {
        if (!known(s, ['anyOf'])) break;
        const members = s.anyOf as TSchema[];
        const allLiterals = members.every(
          (m) => (m as { [Kind]?: string })[Kind] === 'Literal' && typeof m.const === 'string' && known(m, ['type', 'const']),
        );
        if (!allLiterals || members.length === 0) break;
        return [`if (${members.map((m) => `${v} !== ${literal(m.const)}`).join(' && ')}) return false;`];
      }
      case 'Array': {
        if (!known(s, ['type', 'items', 'minItems', 'maxItems'])) break;
        const out = [`if (!Array.isArray(${v})) return false;`];
        if (s.maxItems !== undefined) out.push(`if (${v}.length > ${Number(s.maxItems)}) return false;`);
        if (s.minItems !== undefined) out.push(`if (${v}.length < ${Number(s.minItems)}) return false;`);
        const i = fresh();
        const item = fresh();
        out.push(
          `for (let ${i} = 0; ${i} < ${v}.length; ${i}++) {`,
          `const ${item} = ${v}[${i}];`,
          ...statements(s.items as TSchema, item),
          '}',
        );
        return out;
      }
      default:
        break;
    }
    return delegate(s, v);
  }

  const checks = statements(schema, 'v0');
  const body = (
    allHex === undefined
      ? [...checks, 'return true;']
      : ['let hex = "";', ...checks, `return hex.length === 0 || ${allHex}(hex);`]
  ).join('\n');
  const names = externals.map((_, i) => `x${i}`);
  // The source is generated from our own schemas: keys and constants enter it only as JSON literals,
  // patterns and delegated checks only as arguments.
  const factory = new Function(...names, `return function fastCheck(v0) {\n${body}\n};`) as (
    ...args: unknown[]
  ) => (value: unknown) => boolean;
  return factory(...externals);
}

// `^[0-9a-f]{n}$`, the pattern of a lowercase hex digest, with n as group 1.
const FIXED_HEX = /^\^\[0-9a-f\]\{(\d+)\}\$$/;

/** n for the pattern `^[0-9a-f]{n}$` with n ≥ 1; undefined for any other pattern. */
function fixedHexLength(pattern: string): number | undefined {
  const m = FIXED_HEX.exec(pattern);
  const n = m ? Number(m[1]) : 0;
  return n >= 1 && n <= MAX_HEX_LENGTH ? n : undefined;
}

/** Longer digests than this (SHA-512 hex is 128) are left to the pattern, to bound the code generated. */
const MAX_HEX_LENGTH = 256;

/** Bytes of the buffer the digests of one check are written to (a multiple of 4). */
const HEX_SCRATCH_BYTES = 4096;
/** Once the digests gathered in one check are longer than this, they are checked before the next. */
const HEX_FLUSH = HEX_SCRATCH_BYTES - MAX_HEX_LENGTH;
// Node's own UTF-8 write (what `write(s, 0, n, 'utf8')` calls after looking up the encoding by name).
type Utf8Writable = Buffer & { utf8Write(s: string, offset: number, length: number): number };
const hexScratch = Buffer.alloc(HEX_SCRATCH_BYTES) as Utf8Writable;
const hexWords = new Int32Array(hexScratch.buffer, hexScratch.byteOffset, HEX_SCRATCH_BYTES / 4);

/**
 * True when every UTF-16 code unit of `s` (at most HEX_SCRATCH_BYTES of them) is one of
 * `[0-9a-f]`. Reading a string one `charCodeAt` at a time costs about 25 instructions a character
 * in V8 (each read dispatches on the string's representation), where one copy to bytes and a
 * check of four bytes at a time costs about 3 after the copy: four 64-character digests take
 * 3,800 instructions instead of 6,500, and 270 instead of 400 ns (Node 20).
 *
 * The copy is UTF-8, so a code unit outside ASCII (a lone surrogate included) becomes bytes of
 * 0x80 or above, or more bytes than fit: either refuses the string. For a word of four bytes below
 * 0x80 the sums below do not carry from one byte to the next, and bit 7 of each byte of a sum
 * tells whether that byte is at least a bound: `x + 0x50` for 0x30, `x + 0x46` for 0x3a, `x + 0x1f`
 * for 0x61 and `x + 0x19` for 0x67. A byte of 0x80 or above refuses its word by itself, whatever
 * the sums carried.
 */
function allLowerHex(s: string): boolean {
  // The word view is read into a local and four words are checked a turn (the copy is padded to 16
  // bytes): read from the module's scope inside the loop, the view was loaded and its map checked
  // again for every word. Together 590 fewer instructions for the four digests of a status.
  const n = s.length;
  if (n > HEX_SCRATCH_BYTES || hexScratch.utf8Write(s, 0, n) !== n) return false;
  let end = n;
  while ((end & 15) !== 0) hexScratch[end++] = 0x30;
  let bad = 0;
  const words = hexWords;
  const count = end >> 2;
  for (let i = 0; i < count; i += 4) {
    bad |= notHex(words[i]!) | notHex(words[i + 1]!) | notHex(words[i + 2]!) | notHex(words[i + 3]!);
  }
  return bad === 0;
}

function notHex(x: number): number {
  const ok = (((x + 0x50505050) | 0) & ~((x + 0x46464646) | 0)) | (((x + 0x1f1f1f1f) | 0) & ~((x + 0x19191919) | 0));
  return (~ok | x) & 0x80808080;
}

/** True for schemas TypeBox lets a required property be absent for (it then tests `key in value`). */
function acceptsUndefined(s: TSchema): boolean {
  const kind = (s as { [Kind]?: string })[Kind];
  if (kind === 'Union') return (s.anyOf as TSchema[]).some(acceptsUndefined);
  return kind === 'Undefined' || kind === 'Unknown' || kind === 'Any' || kind === 'Void';
}

/**
 * Up to this length a string is matched against `^[class]+$` by a loop over a table of the ASCII
 * characters: entering V8's regular expression code costs more than the loop for short strings;
 * longer ones are searched for a character outside the class. Measured on strings just parsed
 * from JSON (Node 20, ns per string, loop against search): 13 against 19 for 8 characters, 23
 * against 18 for 12, 66 against 29 for a 36-character UUID. A short string already found to
 * match is looked up instead (`shortVerdicts`); the bound is also the length up to which
 * `JSON.parse` internalizes a string.
 */
const SHORT_STRING = 10;

/** How many short strings one pattern remembers as matching before it forgets them all. */
const SHORT_VERDICTS = 512;
const shortVerdictsByPattern = new Map<string, Set<string>>();

/**
 * The short strings already found to match `pattern`, shared by every check that tests it. JSON.parse
 * internalizes strings of up to 10 characters, so a value a fleet repeats (a firmware version, a
 * container's name) arrives as the same string with its hash computed: looking it up costs less
 * than reading its characters again.
 */
function shortVerdicts(pattern: string): Set<string> {
  let set = shortVerdictsByPattern.get(pattern);
  if (set === undefined) shortVerdictsByPattern.set(pattern, (set = new Set()));
  return set;
}

/**
 * For a pattern `^[class]+$`: which of the 128 ASCII code units the class matches (1) or not (0),
 * found by testing each one with the class itself. Any other pattern: undefined. A string with a
 * code unit above 127 is left to the pattern.
 */
function classTable(pattern: string): Uint8Array | undefined {
  const m = CLASS_PLUS.exec(pattern);
  if (!m) return undefined;
  const one = new RegExp(`^${m[1]}$`);
  const table = new Uint8Array(128);
  for (let c = 0; c < 128; c++) table[c] = one.test(String.fromCharCode(c)) ? 1 : 0;
  return table;
}

/**
 * For a pattern `^[class]+$` whose class is not itself negated: `[^class]`, which finds a code unit
 * outside the class (without the `u` flag both match one UTF-16 code unit, so a non-empty string
 * matches the pattern exactly when the complement finds nothing). Any other pattern: undefined.
 */
function classComplement(pattern: string): RegExp | undefined {
  const m = CLASS_PLUS.exec(pattern);
  if (!m || m[1]!.startsWith('[^')) return undefined;
  return new RegExp(`[^${m[1]!.slice(1)}`);
}

// `^[class]+$`, with the class as group 1.
const CLASS_PLUS = /^\^(\[(?:[^\]\\]|\\.)+\])\+\$$/;

// `^[class]{n}$`, with the class as group 1 and n as group 2.
const FIXED_LENGTH_CLASS = /^\^(\[(?:[^\]\\]|\\.)+\])\{(\d+)\}\$$/;

/**
 * The schema's pattern, or an equivalent faster one: on a string whose length is already checked
 * to be exactly n, `^[class]{n}$` is the same test as `^[class]+$` (a class without the `u` flag
 * matches one UTF-16 code unit).
 */
function fasterPattern(s: TSchema): string {
  const pattern = s.pattern as string;
  const m = FIXED_LENGTH_CLASS.exec(pattern);
  const n = m ? Number(m[2]) : 0;
  return m && n >= 1 && s.minLength === n && s.maxLength === n ? `^${m[1]}+$` : pattern;
}

/**
 * A pattern that `test`s exactly like `pattern` and that V8 matches faster: groups become
 * non-capturing (`test` reads no capture, and V8 records each one) and a single character
 * escape or class repeated a fixed small number of times is written out (`\d{2}` as `\d\d`).
 * A date-time pattern `^\d{4}-\d{2}-…(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$` then takes 19 instead of
 * 28 ns (Node 20). A pattern with a backreference or a named group or lookbehind (`(?<`), or a
 * syntax this rewriting does not read (it reads patterns without the `u` or `v` flag), is
 * returned unchanged.
 */
export function simplerPattern(pattern: string): string {
  if (/\\[1-9k]|\(\?</.test(pattern)) return pattern;
  let out = '';
  let i = 0;
  // The text of the last atom that may be repeated, and where it starts in `out`.
  let atom: string | undefined;
  let atomAt = 0;
  while (i < pattern.length) {
    const ch = pattern[i]!;
    if (ch === '\\') {
      const next = pattern[i + 1];
      if (next === undefined) return pattern;
      atomAt = out.length;
      out += ch + next;
      // Only the class escapes are known to be one whole atom of two characters (`\x41`,
      // `\u0041`, `\cA` and `\0` are longer).
      atom = 'dDwWsS'.includes(next) ? ch + next : undefined;
      i += 2;
    } else if (ch === '[') {
      // Without the `u` or `v` flag a class ends at the first `]` not escaped (`[]` is empty).
      let j = i + 1;
      while (j < pattern.length && pattern[j] !== ']') j += pattern[j] === '\\' ? 2 : 1;
      if (j >= pattern.length) return pattern;
      atomAt = out.length;
      atom = pattern.slice(i, j + 1);
      out += atom;
      i = j + 1;
    } else if (ch === '(') {
      out += pattern[i + 1] === '?' ? ch : '(?:';
      atom = undefined;
      i += 1;
    } else if (ch === '{') {
      const m = /^\{(\d+)\}/.exec(pattern.slice(i));
      const n = m ? Number(m[1]) : 0;
      const end = m ? i + m[0].length : i;
      if (m && atom !== undefined && n >= 2 && n <= 4 && pattern[end] !== '?') {
        out = out.slice(0, atomAt) + atom.repeat(n);
        i = end;
      } else {
        out += ch;
        i += 1;
      }
      atom = undefined;
    } else {
      out += ch;
      atom = undefined;
      i += 1;
    }
  }
  return out;
}
