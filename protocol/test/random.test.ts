import { describe, expect, it } from 'vitest';
import { fnv1a32, hashSeed, mulberry32 } from '../src/random.js';

// Pinned outputs: a simulator run or a fuzz failure is repeated from its seed alone, so these
// sequences must never change.
describe('seeded generator and seed hash', () => {
  it('mulberry32 repeats its sequence from a seed, in [0, 1)', () => {
    const r = mulberry32(42);
    expect([r(), r(), r()]).toEqual([0.6011037519201636, 0.44829055899754167, 0.8524657934904099]);
    const a = mulberry32(7);
    const b = mulberry32(7);
    for (let i = 0; i < 1000; i++) {
      const x = a();
      expect(x).toBe(b());
      expect(x >= 0 && x < 1).toBe(true);
    }
    expect(mulberry32(8)()).not.toBe(mulberry32(7)());
  });

  it('fnv1a32 is FNV-1a (reference vectors) and mixes a seed into the offset basis', () => {
    expect(fnv1a32('')).toBe(0x811c9dc5);
    expect(fnv1a32('a')).toBe(0xe40c292c);
    expect(fnv1a32('foobar')).toBe(0xbf9cf968);
    expect(fnv1a32('7:MRX5-2011-000123')).toBe(4038127338);
    expect(fnv1a32('MRX5-2011-000123', 7)).toBe(529757848);
  });

  it('hashSeed gives a router its own seed, never 0', () => {
    expect(hashSeed(7, 'MRX5-2011-000123')).toBe(529757848);
    // 0x811c9dc5 as the run seed cancels the offset basis: the empty name would hash to 0.
    expect(fnv1a32('', 0x811c9dc5)).toBe(0);
    expect(hashSeed(0x811c9dc5, '')).toBe(1);
  });
});
