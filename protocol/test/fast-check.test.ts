import { type TSchema, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { describe, expect, it } from 'vitest';
import { compileFastCheck } from '../src/fast-check.js';

// The fast check must accept exactly what TypeBox's compiled check accepts, for the kinds it
// generates code for and for those it leaves to TypeBox.
const SCHEMAS: Record<string, TSchema> = {
  digest: Type.String({ minLength: 64, maxLength: 64, pattern: '^[0-9a-f]{64}$' }),
  // Not rewritten: the length is not fixed, so the counted pattern itself decides.
  shortDigest: Type.String({ maxLength: 64, pattern: '^[0-9a-f]{4}$' }),
  // Short strings are matched by a table loop (non-ASCII by the pattern), longer ones are searched
  // for a character outside the class.
  name: Type.String({ maxLength: 64, pattern: '^[A-Za-z0-9._-]+$' }),
  version: Type.String({ pattern: '^[A-Za-z0-9.+_~-]+$' }),
  escapedBracket: Type.String({ pattern: '^[ab\\]-]+$' }),
  negated: Type.String({ pattern: '^[^a]+$' }),
  bounded: Type.Object({
    n: Type.Number({ minimum: -1.5, maximum: 2 }),
    i: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })),
    b: Type.Boolean(),
    z: Type.Null(),
    one: Type.Literal(1),
    s: Type.Union([Type.Literal('a'), Type.Literal('b')]),
    list: Type.Array(Type.String({ minLength: 1 }), { minItems: 1, maxItems: 2 }),
  }),
  // Left to TypeBox: keywords and kinds the generator does not know.
  closed: Type.Object({ a: Type.String() }, { additionalProperties: false }),
  exclusive: Type.Number({ exclusiveMinimum: 0 }),
  record: Type.Record(Type.String({ pattern: '^[a-z]+$' }), Type.Boolean(), { maxProperties: 2 }),
  objectUnion: Type.Union([Type.Object({ k: Type.Literal('x') }), Type.Object({ n: Type.Number() })]),
  requiredUnknown: Type.Object({ u: Type.Unknown() }),
};

const VALUES: unknown[] = [
  'modbus-bridge', 'ab\u00e9', '\u00e9b', 'a'.repeat(16), `${'a'.repeat(15)}!`, 'a'.repeat(17), `${'a'.repeat(17)}!`,
  'b\u00e9', `${'b'.repeat(16)}\u00e9`, 'x y', '\u0000',
  'a'.repeat(10), `${'a'.repeat(9)}!`, 'a'.repeat(11), `${'a'.repeat(10)}!`, `!${'a'.repeat(10)}`, `${'a'.repeat(5)} ${'a'.repeat(5)}`,
  `${'a'.repeat(11)}\u00e9`, `${'a'.repeat(11)}\ud800`, `${'a'.repeat(11)}\n`, `\n${'a'.repeat(11)}`, '1.2.3+build~rc-1_x.y',
  'ab]-ab]-ab]-', 'ab]-ab]-ab]-c', '2f1c7e5a-3b7d-4c1e-9a55-0d3c5e7b9a10', '2f1c7e5a-3b7d-4c1e-9a55-0d3c5e7b9a1/',
  undefined, null, true, 0, 1, -1.5, 2, 2.5, Number.NaN, Infinity, 1.1, '', 'a', 'b', 'abcd',
  '0123456789abcdef'.repeat(4), '0123456789abcdeF'.repeat(4), `${'0'.repeat(63)}\u0660`, [], ['a'], ['a', ''],
  ['a', 'b', 'c'], {}, { a: 'x' }, { a: 'x', b: 1 }, { k: 'x' }, { n: 3 }, { u: undefined }, { x: true, y: false },
  { x: true, y: false, z: true }, { X: true },
  { n: 0, b: false, z: null, one: 1, s: 'a', list: ['x'] },
  { n: 0, i: 3, b: true, z: null, one: 1, s: 'b', list: ['x', 'y'] },
  { n: 0, i: 0.5, b: true, z: null, one: 1, s: 'b', list: ['x'] },
  { n: 3, b: true, z: null, one: 1, s: 'b', list: ['x'] },
  { n: 0, b: true, z: null, one: 1, s: 'c', list: ['x'] },
  { n: 0, b: true, z: null, one: 1, s: 'a', list: [] },
  { n: 0, b: true, z: null, one: 1, s: 'a', list: [''] },
  { n: 0, b: true, z: undefined, one: 1, s: 'a', list: ['x'] },
];

describe('compileFastCheck', () => {
  for (const [name, schema] of Object.entries(SCHEMAS)) {
    it(`agrees with TypeBox's compiled check: ${name}`, () => {
      const fast = compileFastCheck(schema);
      const reference = TypeCompiler.Compile(schema);
      let accepted = 0;
      for (const value of VALUES) {
        expect(fast(value), JSON.stringify(value)).toBe(reference.Check(value));
        if (reference.Check(value)) accepted++;
      }
      expect(accepted, 'some value must pass').toBeGreaterThan(0);
    });
  }
});
