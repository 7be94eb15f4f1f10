import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface FixtureCase {
  name: string;
  expect?: string;
  pointer?: string;
  frame?: unknown;
  frameText?: string;
  frameBase64?: string;
}
export interface FixtureFile {
  type: string;
  valid?: FixtureCase[];
  invalid: FixtureCase[];
}

export const fixturesDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');

/** Loads every fixture file, keyed by message type (`_frame` holds type-independent cases). */
export function loadFixtures(): Map<string, FixtureFile> {
  const out = new Map<string, FixtureFile>();
  for (const file of readdirSync(fixturesDir).filter((f) => f.endsWith('.json'))) {
    const parsed = JSON.parse(readFileSync(join(fixturesDir, file), 'utf8')) as FixtureFile;
    out.set(parsed.type, parsed);
  }
  return out;
}

/** The raw bytes of a case's frame. `{{x*N}}` in frameText expands to N times `x`. */
export function frameBytes(c: FixtureCase): Buffer {
  if (c.frameBase64 !== undefined) return Buffer.from(c.frameBase64, 'base64');
  if (c.frameText !== undefined) {
    return Buffer.from(
      c.frameText.replace(/\{\{(.)\*(\d+)\}\}/g, (_m, ch: string, n: string) => ch.repeat(Number(n))),
    );
  }
  return Buffer.from(JSON.stringify(c.frame));
}
