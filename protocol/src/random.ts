/**
 * The one seeded generator and the one seed hash (`@router-fleet/protocol/random`), for everything
 * that must repeat exactly from a seed: simulated fleets, their faults and routers, agent backoff
 * in tests, fuzz inputs. Not for secrets.
 */

/**
 * mulberry32: a 32-bit state generator, small and fast, with a full 2^32 period. Returns a function
 * giving uniform numbers in [0, 1); the same seed gives the same sequence on every platform.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * 32-bit FNV-1a of `text` (UTF-16 code units), its offset basis mixed with `seed` (0 = plain
 * FNV-1a). Derives independent per-item seeds from a run seed and an item's name.
 */
export function fnv1a32(text: string, seed = 0): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * A simulated router's own seed from the run seed and its serial number: {@link fnv1a32} mixed
 * with the run seed, never 0.
 */
export function hashSeed(seed: number, serial: string): number {
  return fnv1a32(serial, seed) || 1;
}
